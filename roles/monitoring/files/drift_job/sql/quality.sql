-- Fragments of the quality part, shared by drift_metrics.sql, context.sql and window_rows.sql. Each block
-- starts with a "-- name: <key>" line.
--
-- class: an outcome or a predicted class as text, written the same way on both sides whatever carries it,
-- by the label's type (parameter label_type), as the serving API logs prediction_label and as BigQuery's
-- CAST(label AS STRING) writes the label column:
--   BOOLEAN  'true' / 'false' (also from 'True', '1', '0', or label_value 1.0 / 0.0)
--   STRING   the text itself (a label_value only when no text is given)
--   other    (INTEGER, FLOAT or unknown) a whole number without decimals, so '1', '1.0' and 1.0 are the class
--            1; any other text as it is
-- {{ text }} is a STRING expression (label_class, prediction_label), {{ number }} a FLOAT64 one (label_value).
-- drift_job/job.py writes the positive class the same way (canonical_class).
--
-- rescored_window: the model's earlier windows whose quality a run re-computes. They ended less than the
-- label delay before the run's window end (after rescore_from) and their predictions are still kept (they
-- start at or after retained_from). {{ t }} is the table alias with its dot, or nothing.

-- name: class
CASE
      WHEN @label_type IN ('BOOLEAN', 'BOOL') THEN
        CASE
          WHEN {{ text }} IS NOT NULL THEN
            CASE LOWER(TRIM({{ text }})) WHEN '1' THEN 'true' WHEN '0' THEN 'false' ELSE LOWER(TRIM({{ text }})) END
          WHEN {{ number }} IS NOT NULL THEN IF({{ number }} = 0, 'false', 'true')
        END
      WHEN @label_type = 'STRING' AND {{ text }} IS NOT NULL THEN {{ text }}
      ELSE COALESCE(
        IF(SAFE_CAST(TRIM({{ text }}) AS FLOAT64) = TRUNC(SAFE_CAST(TRIM({{ text }}) AS FLOAT64))
             AND ABS(SAFE_CAST(TRIM({{ text }}) AS FLOAT64)) < 1e15,
           CAST(CAST(SAFE_CAST(TRIM({{ text }}) AS FLOAT64) AS INT64) AS STRING), NULL),
        TRIM({{ text }}),
        IF({{ number }} = TRUNC({{ number }}) AND ABS({{ number }}) < 1e15,
           CAST(CAST({{ number }} AS INT64) AS STRING), CAST({{ number }} AS STRING)))
    END

-- name: rescored_window
(@rescore_from IS NOT NULL AND {{ t }}model_name = @model_name
     AND {{ t }}window_end > @rescore_from AND {{ t }}window_end <= @window_end
     AND {{ t }}window_start >= @retained_from)
