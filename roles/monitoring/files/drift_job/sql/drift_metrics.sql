-- Drift and model-quality metrics for one time window [window_start, window_end), written to
-- drift_metrics in ONE statement. A MERGE whose join condition is FALSE inserts every computed row and
-- deletes the rows an earlier run wrote for the same window (and model, when model_name is set).
-- BigQuery applies a single DML statement atomically, so a re-run replaces the window's rows and
-- readers never see a half-written window, with no multi-statement transaction needed.
--
-- Late labels: outcomes often arrive days after the prediction. With rescore_from set (a model name and a
-- label delay), the same statement also re-computes the quality metrics of the earlier windows of the model
-- that drift_metrics holds and that ended after rescore_from (the run's window end minus the label delay),
-- replacing their quality rows: each run fills them in with the outcomes known by then, and a window's
-- figures are final once its end is more than the delay ago. Feature drift and volume do not depend on
-- outcomes and are only computed for the run's window.
--
-- Placeholders (names in double braces) are filled in by drift_job/job.py before the query is sent: table names and the
-- per-feature SELECTs built from feature_values.sql, all from identifiers checked against a strict
-- pattern, the class expressions of classes.sql, the quality metric names (constants) and the quantile count
-- (an integer: APPROX_QUANTILES takes a constant). Every value is a named query parameter (written without the
-- at sign here: the BigQuery emulator's parameter binder also rewrites at-names inside comments):
--   window_start, window_end         TIMESTAMP  the monitored window, [start, end)
--   reference_start, reference_end   TIMESTAMP  reference rows of offline_features, [start, end)
--   reference_split                  STRING     split of the reference rows (NULL: every split)
--   model_name                       STRING     model to compute for (NULL: every model in the window)
--   task_type                        STRING     'regression' (mae, rmse) or 'classification' (accuracy,
--                                               precision, recall, log_loss)
--   label_type                       STRING     BigQuery type of the label column (INTEGER, BOOLEAN, STRING, ...;
--                                               NULL: unknown): how outcomes and predicted classes compare
--   positive_class                   STRING     the class `prediction` is the probability of, written as
--                                               classes.sql writes classes (NULL: no binary metrics)
--   epsilon                          FLOAT64    share given to an empty bin in PSI
--   decision_threshold               FLOAT64    probability at or above which a prediction means positive_class
--   rescore_from                     TIMESTAMP  re-score the model's earlier windows ending after this (NULL: none)
--   retained_from                    TIMESTAMP  ... and starting at or after this (predictions still kept)
--   horizon_start                    TIMESTAMP  earliest start of a scored window: predictions and outcomes
--                                               are read from here (a constant, so partitions are pruned)
--   <metric>_threshold               FLOAT64    threshold per metric type (NULL: no threshold, no flag)
--
-- Metrics (rows of drift_metrics; feature drift is computed per model over all its versions, so its
-- model_version and model_alias are NULL; volume and quality are written per (model_version, model_alias) and
-- for all versions, with both NULL):
--   psi         population stability index of the window against the reference. Numeric features are
--               binned on the reference's quantiles (APPROX_QUANTILES with {{ bins }} intervals; equal
--               interior boundaries are merged), categorical features by category. An empty bin counts
--               as epsilon. PSI = sum over bins of (cur - ref) * ln(cur / ref).
--   ks          two-sample Kolmogorov-Smirnov statistic: max |F_ref(v) - F_cur(v)| over every distinct
--               value v of the pooled (reference + window) sample, i.e. the exact statistic, not an
--               approximation on a quantile grid. Numeric features only.
--   mean_shift  (mean_cur - mean_ref) / stddev_ref (sample standard deviation). Numeric features only.
--   null_rate   share of the window's predictions whose feature is missing, null or (numeric) not a number.
--   mae, rmse   regression: mean absolute error and root mean squared error of prediction - label_value.
--   accuracy    classification: share of predictions whose class is the outcome's. The predicted class is
--               prediction_label; without one (a probability only), prediction >= decision_threshold means
--               positive_class and the prediction is right when the outcome is (not) positive_class.
--   precision, recall   classification with a positive class: TP / (TP + FP) and TP / (TP + FN).
--   log_loss    classification with a positive class: mean of -ln(p) for a positive outcome and -ln(1 - p)
--               otherwise, p = prediction clipped to [1e-15, 1 - 1e-15]; predictions outside [0, 1] are left out.
--   volume      number of predictions in the window.
--
-- Champion and challenger (predictions.served, predictions.model_alias): in shadow mode the serving API logs two
-- rows per request under one prediction_id, the answer returned (served true) and the challenger's shadow
-- prediction (served false); older rows have served NULL and count as served. Each (model_version, model_alias)
-- gets the quality and volume of every row it predicted, shadow rows included: that volume is the sample size of
-- its quality, and champion and challenger are scored on the same requests. Everything over all versions
-- (quality and volume with model_version NULL) and feature drift count served rows only, so a shadowed request
-- counts once, as what the caller got.
-- Ground truth is matched on prediction_id (latest outcome per prediction); an outcome without a
-- prediction_id is matched on entity_id to the entity's latest served prediction (of each model) made at or
-- before the outcome. Either way the outcome goes to every row of that prediction_id: the served answer and the
-- shadow prediction of the same request, once each. Only outcomes observed from horizon_start on are read.
-- NULL statistics (no reference, no rows, zero variance, no outcome) are not written.
-- drift_detected: value >= threshold (|value| for mean_shift); value < threshold for accuracy, precision,
-- recall and volume.

MERGE `{{ drift_metrics }}` AS target
USING (
  WITH
  reference_rows AS (
    SELECT *
    FROM `{{ offline_features }}`
    WHERE event_timestamp >= @reference_start AND event_timestamp < @reference_end
      AND (@reference_split IS NULL OR split = @reference_split)
  ),
  current_rows AS (
    SELECT *
    FROM `{{ predictions }}`
    WHERE timestamp >= @window_start AND timestamp < @window_end
      AND (@model_name IS NULL OR model_name = @model_name)
  ),
  -- The answers returned to callers (served NULL: logged before shadow mode existed); see the header.
  served_rows AS (
    SELECT * FROM current_rows WHERE served IS NOT FALSE
  ),
  models AS (
    SELECT DISTINCT model_name FROM current_rows
    UNION DISTINCT
    -- A model asked for by name gets its rows (volume 0) even when it made no prediction.
    SELECT @model_name FROM UNNEST([1]) WHERE @model_name IS NOT NULL
  ),
  -- One row per (feature, reference row): feature, kind, num_value, cat_value.
  reference_values AS (
{{ reference_values }}
  ),
  -- One row per (feature, prediction): model_name, feature, kind, num_value, cat_value.
  current_values AS (
{{ current_values }}
  ),

  -- Numeric bins: the distinct interior reference quantiles, ascending, as RANGE_BUCKET boundaries.
  reference_quantiles AS (
    SELECT feature, APPROX_QUANTILES(num_value, {{ bins }}) AS quantiles
    FROM reference_values
    WHERE kind = 'numeric' AND num_value IS NOT NULL
    GROUP BY feature
  ),
  bin_edges AS (
    SELECT
      feature,
      ARRAY(
        SELECT DISTINCT edge FROM UNNEST(quantiles) AS edge WITH OFFSET AS position
        WHERE position > 0 AND position < {{ bins }}
        ORDER BY edge
      ) AS edges
    FROM reference_quantiles
  ),
  binned_values AS (
    SELECT 'reference' AS side, CAST(NULL AS STRING) AS model_name, v.feature,
           CAST(RANGE_BUCKET(v.num_value, e.edges) AS STRING) AS bin
    FROM reference_values AS v JOIN bin_edges AS e ON e.feature = v.feature
    WHERE v.kind = 'numeric' AND v.num_value IS NOT NULL
    UNION ALL
    SELECT 'current', v.model_name, v.feature, CAST(RANGE_BUCKET(v.num_value, e.edges) AS STRING)
    FROM current_values AS v JOIN bin_edges AS e ON e.feature = v.feature
    WHERE v.kind = 'numeric' AND v.num_value IS NOT NULL
    UNION ALL
    SELECT 'reference', CAST(NULL AS STRING), feature, cat_value
    FROM reference_values
    WHERE kind = 'categorical' AND cat_value IS NOT NULL
    UNION ALL
    SELECT 'current', model_name, feature, cat_value
    FROM current_values
    WHERE kind = 'categorical' AND cat_value IS NOT NULL
  ),
  reference_bins AS (
    SELECT feature, bin, COUNT(*) AS n,
           SUM(COUNT(*)) OVER (PARTITION BY feature) AS total
    FROM binned_values WHERE side = 'reference'
    GROUP BY feature, bin
  ),
  current_bins AS (
    SELECT model_name, feature, bin, COUNT(*) AS n,
           SUM(COUNT(*)) OVER (PARTITION BY model_name, feature) AS total
    FROM binned_values WHERE side = 'current'
    GROUP BY model_name, feature, bin
  ),
  psi_terms AS (
    -- Every bin seen on either side, for every model with values for the feature.
    SELECT
      c.model_name, c.feature,
      IF(COALESCE(r.n, 0) = 0, @epsilon, r.n / rt.total) AS p_ref,
      IF(COALESCE(cb.n, 0) = 0, @epsilon, cb.n / c.total) AS p_cur
    FROM (SELECT DISTINCT model_name, feature, total FROM current_bins) AS c
    JOIN (SELECT DISTINCT feature, total FROM reference_bins) AS rt ON rt.feature = c.feature
    JOIN (SELECT DISTINCT feature, bin FROM binned_values) AS b ON b.feature = c.feature
    LEFT JOIN reference_bins AS r ON r.feature = b.feature AND r.bin = b.bin
    LEFT JOIN current_bins AS cb ON cb.model_name = c.model_name AND cb.feature = b.feature AND cb.bin = b.bin
  ),
  psi AS (
    SELECT model_name, feature, SUM((p_cur - p_ref) * LN(p_cur / p_ref)) AS value
    FROM psi_terms
    GROUP BY model_name, feature
  ),

  -- Kolmogorov-Smirnov over the pooled distinct values (counts per value, then running sums).
  ks_points AS (
    SELECT model_name, feature, v, SUM(n_ref) AS n_ref, SUM(n_cur) AS n_cur
    FROM (
      SELECT m.model_name, r.feature, r.v, r.n AS n_ref, 0 AS n_cur
      FROM (
        SELECT feature, num_value AS v, COUNT(*) AS n
        FROM reference_values WHERE kind = 'numeric' AND num_value IS NOT NULL
        GROUP BY feature, num_value
      ) AS r
      CROSS JOIN models AS m
      UNION ALL
      SELECT model_name, feature, num_value, 0, COUNT(*)
      FROM current_values WHERE kind = 'numeric' AND num_value IS NOT NULL
      GROUP BY model_name, feature, num_value
    )
    GROUP BY model_name, feature, v
  ),
  ks_cdf AS (
    SELECT
      model_name, feature,
      SUM(n_ref) OVER (PARTITION BY model_name, feature ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        / SUM(n_ref) OVER (PARTITION BY model_name, feature) AS f_ref,
      SUM(n_cur) OVER (PARTITION BY model_name, feature ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        / SUM(n_cur) OVER (PARTITION BY model_name, feature) AS f_cur,
      SUM(n_ref) OVER (PARTITION BY model_name, feature) AS total_ref,
      SUM(n_cur) OVER (PARTITION BY model_name, feature) AS total_cur
    FROM ks_points
  ),
  ks AS (
    SELECT model_name, feature, MAX(ABS(f_ref - f_cur)) AS value
    FROM ks_cdf
    WHERE total_ref > 0 AND total_cur > 0
    GROUP BY model_name, feature
  ),

  reference_stats AS (
    SELECT feature, AVG(num_value) AS mean, STDDEV_SAMP(num_value) AS stddev
    FROM reference_values WHERE kind = 'numeric'
    GROUP BY feature
  ),
  current_stats AS (
    SELECT
      model_name, feature, ANY_VALUE(kind) AS kind, AVG(num_value) AS mean, COUNT(*) AS n,
      COUNTIF(IF(kind = 'numeric', num_value IS NULL, cat_value IS NULL)) AS nulls
    FROM current_values
    GROUP BY model_name, feature
  ),

  -- Model quality, for every scored window: this run's, and the model's earlier windows being re-scored.
  windows AS (
    SELECT @window_start AS window_start, @window_end AS window_end
    UNION DISTINCT
    SELECT DISTINCT window_start, window_end
    FROM `{{ drift_metrics }}`
    WHERE {{ rescored_window }} AND window_start >= @horizon_start
  ),
  -- Every window boundary, ascending: the elementary intervals between two neighbours are each inside or
  -- outside any window, so outcomes are summed per interval once and each window adds up its intervals
  -- (overlapping windows do not multiply the rows).
  window_edges AS (
    SELECT window_start AS edge FROM windows
    UNION DISTINCT
    SELECT window_end FROM windows
  ),
  edges AS (
    SELECT ARRAY(SELECT UNIX_MICROS(edge) FROM window_edges ORDER BY edge) AS edges
  ),
  window_intervals AS (
    -- A window covers the intervals RANGE_BUCKET(start) to RANGE_BUCKET(end) - 1.
    SELECT w.window_start, w.window_end,
           RANGE_BUCKET(UNIX_MICROS(w.window_start), e.edges) AS first_interval,
           RANGE_BUCKET(UNIX_MICROS(w.window_end), e.edges) - 1 AS last_interval
    FROM windows AS w CROSS JOIN edges AS e
  ),
  scored_rows AS (
    SELECT prediction_id, entity_id, timestamp, model_name, model_version, model_alias, served IS NOT FALSE AS served,
           prediction, prediction_label
    FROM `{{ predictions }}`
    WHERE timestamp >= @horizon_start AND timestamp < @window_end
      AND (@model_name IS NULL OR model_name = @model_name)
  ),
  truth_by_prediction AS (
    SELECT prediction_id, label_value, label_class
    FROM `{{ ground_truth }}`
    WHERE timestamp >= @horizon_start AND prediction_id IS NOT NULL
    QUALIFY ROW_NUMBER() OVER (PARTITION BY prediction_id ORDER BY timestamp DESC) = 1
  ),
  truth_by_entity AS (
    SELECT entity_id, timestamp, label_value, label_class
    FROM `{{ ground_truth }}`
    WHERE timestamp >= @horizon_start AND prediction_id IS NULL AND entity_id IS NOT NULL
  ),
  -- An outcome known by entity only belongs to the request the entity made last before it: its served row picks
  -- the prediction_id (a shadow row never answered the entity), then every row of that id gets the outcome.
  truth_by_entity_request AS (
    SELECT model_name, prediction_id, label_value, label_class
    FROM (
      SELECT
        p.model_name, p.prediction_id, g.label_value, g.label_class,
        ROW_NUMBER() OVER (
          PARTITION BY p.model_name, g.entity_id, g.timestamp, g.label_value, g.label_class
          ORDER BY p.timestamp DESC, p.prediction_id
        ) AS recency
      FROM truth_by_entity AS g
      JOIN scored_rows AS p ON p.entity_id = g.entity_id
      WHERE p.timestamp <= g.timestamp AND p.served
    )
    WHERE recency = 1
  ),
  labelled AS (
    SELECT p.model_name, p.model_version, p.model_alias, p.served, p.timestamp, p.prediction, p.prediction_label,
           g.label_value, g.label_class
    FROM scored_rows AS p
    JOIN truth_by_prediction AS g ON g.prediction_id = p.prediction_id
    UNION ALL
    SELECT p.model_name, p.model_version, p.model_alias, p.served, p.timestamp, p.prediction, p.prediction_label,
           g.label_value, g.label_class
    FROM scored_rows AS p
    JOIN truth_by_entity_request AS g ON g.model_name = p.model_name AND g.prediction_id = p.prediction_id
  ),
  classes AS (
    SELECT
      model_name, model_version, model_alias, served, timestamp, prediction, label_value,
      {{ predicted_class }} AS predicted_class,
      {{ actual_class }} AS actual_class
    FROM labelled
  ),
  positives AS (
    SELECT
      *,
      CASE
        WHEN @positive_class IS NULL THEN NULL
        WHEN predicted_class IS NOT NULL THEN predicted_class = @positive_class
        ELSE prediction >= @decision_threshold
      END AS predicted_positive,
      actual_class = @positive_class AS actual_positive
    FROM classes
  ),
  outcomes AS (
    SELECT
      model_name, model_version, model_alias, served,
      RANGE_BUCKET(UNIX_MICROS(timestamp), e.edges) AS interval_index,
      prediction - label_value AS error,
      CASE
        WHEN actual_class IS NULL THEN NULL
        WHEN predicted_class IS NOT NULL THEN IF(predicted_class = actual_class, 1, 0)
        WHEN predicted_positive IS NOT NULL THEN IF(predicted_positive = actual_positive, 1, 0)
      END AS correct,
      predicted_positive, actual_positive,
      IF(actual_positive IS NOT NULL AND prediction >= 0 AND prediction <= 1,
         -LN(IF(actual_positive, GREATEST(prediction, 1e-15), GREATEST(1 - prediction, 1e-15))),
         NULL) AS log_loss
    FROM positives CROSS JOIN edges AS e
  ),
  interval_sums AS (
    SELECT
      model_name, model_version, model_alias, served, interval_index,
      COUNT(error) AS n_error, SUM(ABS(error)) AS abs_error, SUM(error * error) AS squared_error,
      COUNT(correct) AS n_class, SUM(correct) AS n_correct,
      COUNTIF(predicted_positive AND actual_positive) AS tp,
      COUNTIF(predicted_positive AND NOT actual_positive) AS fp,
      COUNTIF(NOT predicted_positive AND actual_positive) AS fn,
      COUNT(log_loss) AS n_log_loss, SUM(log_loss) AS log_loss
    FROM outcomes
    GROUP BY model_name, model_version, model_alias, served, interval_index
  ),
  -- Per (version, alias) and whether served: the served ones alone make up the all-versions figures.
  window_sums AS (
    SELECT w.window_start, w.window_end, s.model_name, s.model_version, s.model_alias, s.served,
           SUM(n_error) AS n_error, SUM(abs_error) AS abs_error, SUM(squared_error) AS squared_error,
           SUM(n_class) AS n_class, SUM(n_correct) AS n_correct, SUM(tp) AS tp, SUM(fp) AS fp, SUM(fn) AS fn,
           SUM(n_log_loss) AS n_log_loss, SUM(log_loss) AS log_loss
    FROM window_intervals AS w
    JOIN interval_sums AS s ON s.interval_index BETWEEN w.first_interval AND w.last_interval
    GROUP BY w.window_start, w.window_end, s.model_name, s.model_version, s.model_alias, s.served
  ),
  all_versions AS (
    SELECT window_start, window_end, model_name, model_version, model_alias,
           SUM(n_error) AS n_error, SUM(abs_error) AS abs_error, SUM(squared_error) AS squared_error,
           SUM(n_class) AS n_class, SUM(n_correct) AS n_correct, SUM(tp) AS tp, SUM(fp) AS fp, SUM(fn) AS fn,
           SUM(n_log_loss) AS n_log_loss, SUM(log_loss) AS log_loss
    FROM window_sums
    GROUP BY window_start, window_end, model_name, model_version, model_alias
    UNION ALL
    SELECT window_start, window_end, model_name, CAST(NULL AS STRING), CAST(NULL AS STRING),
           SUM(n_error), SUM(abs_error), SUM(squared_error), SUM(n_class), SUM(n_correct), SUM(tp), SUM(fp), SUM(fn),
           SUM(n_log_loss), SUM(log_loss)
    FROM window_sums
    WHERE served
    GROUP BY window_start, window_end, model_name
  ),
  quality AS (
    SELECT
      window_start, window_end, model_name, model_version, model_alias,
      SAFE_DIVIDE(abs_error, n_error) AS mae,
      SQRT(SAFE_DIVIDE(squared_error, n_error)) AS rmse,
      SAFE_DIVIDE(n_correct, n_class) AS accuracy,
      SAFE_DIVIDE(tp, tp + fp) AS precision_value,
      SAFE_DIVIDE(tp, tp + fn) AS recall_value,
      SAFE_DIVIDE(log_loss, n_log_loss) AS log_loss
    FROM all_versions
  ),
  -- Per (version, alias): every row it predicted, shadow included (its quality's sample size); all versions:
  -- the requests answered.
  volume AS (
    SELECT model_name, model_version, model_alias, COUNT(*) AS n
    FROM current_rows
    GROUP BY model_name, model_version, model_alias
    UNION ALL
    SELECT m.model_name, CAST(NULL AS STRING), CAST(NULL AS STRING), COUNT(p.prediction_id)
    FROM models AS m LEFT JOIN served_rows AS p ON p.model_name = m.model_name
    GROUP BY m.model_name
  ),

  metrics AS (
    SELECT @window_start AS window_start, @window_end AS window_end, model_name,
           CAST(NULL AS STRING) AS model_version, CAST(NULL AS STRING) AS model_alias, feature, 'psi' AS metric_type,
           value
    FROM psi
    UNION ALL
    SELECT @window_start, @window_end, model_name, CAST(NULL AS STRING), CAST(NULL AS STRING), feature, 'ks', value
    FROM ks
    UNION ALL
    SELECT @window_start, @window_end, c.model_name, CAST(NULL AS STRING), CAST(NULL AS STRING), c.feature,
           'mean_shift', SAFE_DIVIDE(c.mean - r.mean, r.stddev)
    FROM current_stats AS c JOIN reference_stats AS r ON r.feature = c.feature
    WHERE c.kind = 'numeric'
    UNION ALL
    SELECT @window_start, @window_end, model_name, CAST(NULL AS STRING), CAST(NULL AS STRING), feature, 'null_rate',
           nulls / n
    FROM current_stats
    UNION ALL
    SELECT window_start, window_end, model_name, model_version, model_alias, CAST(NULL AS STRING), 'mae', mae
    FROM quality WHERE @task_type = 'regression'
    UNION ALL
    SELECT window_start, window_end, model_name, model_version, model_alias, CAST(NULL AS STRING), 'rmse', rmse
    FROM quality WHERE @task_type = 'regression'
    UNION ALL
    SELECT window_start, window_end, model_name, model_version, model_alias, CAST(NULL AS STRING), 'accuracy',
           accuracy
    FROM quality WHERE @task_type = 'classification'
    UNION ALL
    SELECT window_start, window_end, model_name, model_version, model_alias, CAST(NULL AS STRING), 'precision',
           precision_value
    FROM quality WHERE @task_type = 'classification'
    UNION ALL
    SELECT window_start, window_end, model_name, model_version, model_alias, CAST(NULL AS STRING), 'recall',
           recall_value
    FROM quality WHERE @task_type = 'classification'
    UNION ALL
    SELECT window_start, window_end, model_name, model_version, model_alias, CAST(NULL AS STRING), 'log_loss', log_loss
    FROM quality WHERE @task_type = 'classification'
    UNION ALL
    SELECT @window_start, @window_end, model_name, model_version, model_alias, CAST(NULL AS STRING), 'volume',
           CAST(n AS FLOAT64)
    FROM volume
  ),
  thresholded AS (
    SELECT
      *,
      CASE metric_type
        WHEN 'psi' THEN @psi_threshold
        WHEN 'ks' THEN @ks_threshold
        WHEN 'mean_shift' THEN @mean_shift_threshold
        WHEN 'null_rate' THEN @null_rate_threshold
        WHEN 'mae' THEN @mae_threshold
        WHEN 'rmse' THEN @rmse_threshold
        WHEN 'accuracy' THEN @accuracy_threshold
        WHEN 'precision' THEN @precision_threshold
        WHEN 'recall' THEN @recall_threshold
        WHEN 'log_loss' THEN @log_loss_threshold
        WHEN 'volume' THEN @volume_threshold
      END AS threshold
    FROM metrics
    WHERE value IS NOT NULL AND NOT IS_NAN(value)
  )
  SELECT
    window_start,
    window_end,
    CURRENT_TIMESTAMP() AS computed_at,
    model_name,
    model_version,
    model_alias,
    feature,
    metric_type,
    value,
    threshold,
    CASE
      WHEN threshold IS NULL THEN NULL
      WHEN metric_type IN ({{ lower_is_worse }}) THEN value < threshold
      WHEN metric_type = 'mean_shift' THEN ABS(value) >= threshold
      ELSE value >= threshold
    END AS drift_detected
  FROM thresholded
) AS source
ON FALSE
-- What this run replaces: every row of its window (and model), and the quality rows of the re-scored windows.
-- The scope is chosen by window, model and metric only, never by a row's key, so every (model_version,
-- model_alias) row of that scope goes, NULL aliases and rows of aliases that no longer predict included: a re-run
-- cannot leave a duplicate or a stale row behind.
WHEN NOT MATCHED BY SOURCE
  AND (
    (target.window_start = @window_start AND target.window_end = @window_end
     AND (@model_name IS NULL OR target.model_name = @model_name))
    OR ({{ rescored_target }} AND target.window_start >= @horizon_start
        AND target.metric_type IN ({{ quality_metrics }}))
  )
  THEN DELETE
WHEN NOT MATCHED BY TARGET THEN
  INSERT (window_start, window_end, computed_at, model_name, model_version, model_alias, feature, metric_type, value,
          threshold, drift_detected)
  VALUES (source.window_start, source.window_end, source.computed_at, source.model_name, source.model_version,
          source.model_alias, source.feature, source.metric_type, source.value, source.threshold, source.drift_detected)
