-- table: headline
-- The run's headline at a 50% pruning ratio: utility retained in the calibration domain
-- (biomedical) and outside it (general), per criterion; printed at the end of `expertlab run`.
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set the experts were selected on
-- column: criterion: saliency criterion that chose the kept experts
-- column: n_seeds: calibration seeds averaged
-- column: biomedical_utility: biomedical utility retention in percent of the source, mean ± sd over seeds
-- column: general_utility: general-domain utility retention in percent of the source, mean ± sd over seeds
-- column: biomedical_retention_mean: mean over seeds of the mean over biomedical utility tasks of variant score / source score
-- column: biomedical_retention_sd: sample standard deviation of biomedical_retention_mean's terms over seeds
-- column: general_retention_mean: as biomedical_retention_mean, over general-domain utility tasks
-- column: general_retention_sd: sample standard deviation of general_retention_mean's terms over seeds

with

grid_domain_retention as (
    select * from grid_domain_retention
),

variant_retention as (
    select
        model,
        calibration,
        seed,
        criterion,
        avg(retention) filter (where domain = 'biomedical') as biomedical_retention,
        avg(retention) filter (where domain = 'general') as general_retention
    from grid_domain_retention
    where ratio = getvariable('headline_ratio')  -- params report.headline_ratio
    group by
        model,
        calibration,
        seed,
        criterion
),

criterion_retention as (
    select
        model,
        calibration,
        criterion,
        count(*) as n_seeds,
        avg(biomedical_retention) as biomedical_retention_mean,
        stddev_samp(biomedical_retention) as biomedical_retention_sd,
        avg(general_retention) as general_retention_mean,
        stddev_samp(general_retention) as general_retention_sd
    from variant_retention
    group by
        model,
        calibration,
        criterion
),

final as (
    select
        model,
        calibration,
        criterion,
        n_seeds,
        case
            when biomedical_retention_sd is not null
                then printf('%.1f ± %.1f', 100 * biomedical_retention_mean, 100 * biomedical_retention_sd)
            else printf('%.1f', 100 * biomedical_retention_mean)
        end as biomedical_utility,
        case
            when general_retention_sd is not null
                then printf('%.1f ± %.1f', 100 * general_retention_mean, 100 * general_retention_sd)
            else printf('%.1f', 100 * general_retention_mean)
        end as general_utility,
        biomedical_retention_mean,
        biomedical_retention_sd,
        general_retention_mean,
        general_retention_sd
    from criterion_retention
)

select * from final
order by model, calibration, criterion
