-- table: utility_retention
-- The study's Figure 2: how much utility pruned variants keep relative to their source model,
-- per domain and task kind, as mean and standard deviation over calibration seeds.
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set the experts were selected on
-- column: criterion: saliency criterion that chose the kept experts
-- column: ratio: fraction of routed experts removed per MoE layer
-- column: domain: task domain (biomedical, general)
-- column: kind: task kind (generation, classification)
-- column: n_seeds: calibration seeds averaged
-- column: retention_mean: mean over seeds of a variant's retention, itself the mean over the domain and kind's utility tasks of (variant primary-metric mean / source primary-metric mean); 1 = source level
-- column: retention_sd: sample standard deviation of the retention over seeds (null with one seed)

with

grid_primary_scores as (
    select * from grid_primary_scores
),

utility_scores as (
    select *
    from grid_primary_scores
    -- a task the source scores 0 on has no retention
    where aspect = 'utility'
        and retention is not null
),

variant_retention as (
    select
        model,
        calibration,
        seed,
        criterion,
        ratio,
        domain,
        kind,
        avg(retention) as retention
    from utility_scores
    group by
        model,
        calibration,
        seed,
        criterion,
        ratio,
        domain,
        kind
),

final as (
    select
        model,
        calibration,
        criterion,
        ratio,
        domain,
        kind,
        count(*) as n_seeds,
        avg(retention) as retention_mean,
        stddev_samp(retention) as retention_sd
    from variant_retention
    group by
        model,
        calibration,
        criterion,
        ratio,
        domain,
        kind
)

select * from final
order by model, calibration, criterion, ratio, domain, kind
