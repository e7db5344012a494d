-- Per-feature SELECTs that drift_metrics.sql stacks with UNION ALL into reference_values and
-- current_values. Each block starts with a "-- name: <side>_<kind>" line; {{ feature }} is a column name
-- that matched ^[A-Za-z_][A-Za-z0-9_]*$ before it got here.
-- The reference side reads the typed column of offline_features; the current side reads the feature
-- from the JSON object the serving API logged in predictions.features. A numeric feature whose JSON
-- value is not a number counts as null; categories compare as strings on both sides (CAST(col AS
-- STRING) and JSON_VALUE render integers and booleans the same way). The current side reads served_rows, the
-- predictions returned to callers: a challenger's shadow prediction repeats the served request's features, and
-- counting it would weigh shadowed traffic twice.

-- name: reference_numeric
    SELECT '{{ feature }}' AS feature, 'numeric' AS kind,
           CAST(`{{ feature }}` AS FLOAT64) AS num_value, CAST(NULL AS STRING) AS cat_value
    FROM reference_rows

-- name: reference_categorical
    SELECT '{{ feature }}' AS feature, 'categorical' AS kind,
           CAST(NULL AS FLOAT64) AS num_value, CAST(`{{ feature }}` AS STRING) AS cat_value
    FROM reference_rows

-- name: current_numeric
    SELECT model_name, '{{ feature }}' AS feature, 'numeric' AS kind,
           SAFE_CAST(JSON_VALUE(features, '$.{{ feature }}') AS FLOAT64) AS num_value, CAST(NULL AS STRING) AS cat_value
    FROM served_rows

-- name: current_categorical
    SELECT model_name, '{{ feature }}' AS feature, 'categorical' AS kind,
           CAST(NULL AS FLOAT64) AS num_value, JSON_VALUE(features, '$.{{ feature }}') AS cat_value
    FROM served_rows
