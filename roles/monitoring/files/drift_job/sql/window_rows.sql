-- The rows drift_metrics holds for one window (and model, when model_name is set): what a run wrote.
SELECT model_name, model_version, feature, metric_type, value, threshold, drift_detected, computed_at
FROM `{{ drift_metrics }}`
WHERE window_start = @window_start AND window_end = @window_end
  AND (@model_name IS NULL OR model_name = @model_name)
ORDER BY model_name, model_version, feature, metric_type
