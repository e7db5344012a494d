-- What a run finds out before its MERGE, in one row:
--   horizon_start      earliest start of the model's earlier windows to re-score (NULL: none)
--   rescored_windows   how many there are
-- and, with check_task (a run computing regression metrics), what the outcomes and predictions look like, so
-- that a classifier scored as a regression is pointed out:
--   label_values       distinct outcomes (as classes, see quality.sql) observed since the window start
--   fractional_labels  outcomes that are a number with decimals and no class
--   predictions        the window's predictions with a numeric prediction, and of those
--   outside_unit       how many are outside [0, 1] (not a probability)
--   fractional         how many have decimals
WITH
rescored AS (
  SELECT DISTINCT window_start, window_end
  FROM `{{ drift_metrics }}`
  WHERE {{ rescored_window }} AND NOT (window_start = @window_start AND window_end = @window_end)
),
outcomes AS (
  SELECT {{ actual_class }} AS actual_class, label_class, label_value
  FROM `{{ ground_truth }}`
  WHERE @check_task AND timestamp >= @window_start
),
predicted AS (
  SELECT prediction
  FROM `{{ predictions }}`
  WHERE @check_task AND timestamp >= @window_start AND timestamp < @window_end
    AND (@model_name IS NULL OR model_name = @model_name)
)
SELECT
  (SELECT MIN(window_start) FROM rescored) AS horizon_start,
  (SELECT COUNT(*) FROM rescored) AS rescored_windows,
  (SELECT COUNT(DISTINCT actual_class) FROM outcomes) AS label_values,
  (SELECT COUNTIF(label_class IS NULL AND label_value != TRUNC(label_value)) FROM outcomes) AS fractional_labels,
  (SELECT COUNT(prediction) FROM predicted) AS predictions,
  (SELECT COUNTIF(prediction < 0 OR prediction > 1) FROM predicted) AS outside_unit,
  (SELECT COUNTIF(prediction != TRUNC(prediction)) FROM predicted) AS fractional
