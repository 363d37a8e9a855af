-- Example analyst queries for the BigQuery warehouse. Run them with the warehouse dataset as the
-- default dataset (bq query --dataset_id=PROJECT:DATASET, or the console's query settings) and
-- @date set to the night of interest. The test suite runs each one against the BigQuery emulator.

-- name: top_positives
-- A night's most likely positives, best first: the use case's key and the probability.
SELECT * EXCEPT (score_date, label, threshold, model_name, model_version, model_role, run_id, scored_at)
FROM predictions
WHERE score_date = @date AND model_role = 'champion' AND label
ORDER BY probability DESC
LIMIT 20;

-- name: daily_summary
-- Volume, mean score and share labelled positive, night by night (a view).
SELECT score_date, model_version, records, mean_probability, positive_share
FROM daily_score_summary
ORDER BY score_date;

-- name: latest_scores
-- How many records have a current score, and how many of those are likely positives.
SELECT COUNT(*) AS records, COUNTIF(label) AS positives
FROM latest_predictions;

-- name: reconciliation
-- Did each night's latest successful run account for every record?
SELECT score_date, input_records, scored_records, rejected_records, duplicates_dropped,
       input_records = scored_records + rejected_records + COALESCE(duplicates_dropped, 0) AS reconciled
FROM scoring_runs
WHERE status = 'succeeded'
QUALIFY ROW_NUMBER() OVER (PARTITION BY score_date ORDER BY finished_at DESC) = 1
ORDER BY score_date;

-- name: rejections
-- Why records were rejected on a night (a file error counts the records it held).
SELECT reason, column_name, SUM(records) AS records
FROM scoring_errors
WHERE score_date = @date
GROUP BY reason, column_name
ORDER BY records DESC, reason;

-- name: why_refused
-- Why was the last refused night refused, and which rejections made it fail? (README: Quality gates)
WITH last_refused AS (
  SELECT run_id, score_date, error FROM scoring_runs
  WHERE status = 'refused' ORDER BY finished_at DESC LIMIT 1)
SELECT r.score_date, r.run_id, r.error AS why, e.reason, e.column_name, SUM(e.records) AS records
FROM last_refused AS r LEFT JOIN refused_errors AS e ON e.run_id = r.run_id
GROUP BY r.score_date, r.run_id, r.error, e.reason, e.column_name
ORDER BY records DESC;

-- name: drift_heat_map
-- Which features drifted on which night, against training (the last 30 nights, from a view).
SELECT score_date, feature, jensen_shannon, l_infinity, psi, flagged
FROM drift_by_night
WHERE baseline = 'training'
ORDER BY score_date, feature;

-- name: night_quality
-- How each of the last 30 published nights looked, newest first (from a view).
SELECT score_date, input_records, rejection_rate, score_mean, positive_rate, score_p10, score_p50, score_p90
FROM night_quality
ORDER BY score_date DESC;
