-- The rows a run wrote: every row of its window (and model, when model_name is set), and the quality rows of
-- the earlier windows it re-scored (see rescored_window in quality.sql).
SELECT window_start, window_end, model_name, model_version, model_alias, feature, metric_type, value, threshold,
       drift_detected, computed_at
FROM `{{ drift_metrics }}`
WHERE (window_start = @window_start AND window_end = @window_end
       AND (@model_name IS NULL OR model_name = @model_name))
   OR ({{ rescored_window }} AND window_start >= @horizon_start AND metric_type IN ({{ quality_metrics }}))
ORDER BY window_start, window_end, model_name, model_version, model_alias, feature, metric_type
