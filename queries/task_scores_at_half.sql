-- table: task_scores_at_half
-- Per-task primary scores at a 50% pruning ratio (the study's Tables 6-8), beside the source model's.
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set the experts were selected on
-- column: criterion: saliency criterion that chose the kept experts
-- column: domain: task domain (biomedical, general)
-- column: aspect: what the task measures (utility, reliability)
-- column: kind: task kind (generation, classification)
-- column: task: evaluation task
-- column: metric: the task's primary metric
-- column: n_seeds: calibration seeds averaged
-- column: score_mean: mean over seeds of the variant's mean primary metric
-- column: score_sd: sample standard deviation over seeds (null with one seed)
-- column: source_score: the source model's mean primary metric (null when the source was not scored)

with

grid_primary_scores as (
    select * from grid_primary_scores
),

at_half as (
    select *
    from grid_primary_scores
    where ratio = getvariable('headline_ratio')  -- params report.headline_ratio
),

final as (
    select
        model,
        calibration,
        criterion,
        domain,
        aspect,
        kind,
        task,
        metric,
        count(*) as n_seeds,
        avg(score) as score_mean,
        stddev_samp(score) as score_sd,
        any_value(source_score) as source_score
    from at_half
    group by
        model,
        calibration,
        criterion,
        domain,
        aspect,
        kind,
        task,
        metric
)

select * from final
order by model, calibration, criterion, domain, aspect, kind, task
