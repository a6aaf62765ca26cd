-- table: findings
-- The findings a study at 50% pruning is expected to show (DESIGN.md, toy world), checked per
-- criterion: data-driven criteria keep more calibration-domain (biomedical) utility than random,
-- and general-domain utility falls further than biomedical utility (under a calibration of one domain:
-- not under one made of parts, whose general part is meant to keep general utility).
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set the experts were selected on
-- column: criterion: saliency criterion that chose the kept experts
-- column: finding: beats_random (biomedical utility above random's) or general_falls_faster (general below biomedical)
-- column: value: the criterion's mean over seeds: biomedical retention for beats_random, general retention for general_falls_faster
-- column: reference: what value is compared with: random's mean biomedical retention, or the criterion's own mean biomedical retention
-- column: holds: value > reference for beats_random, value < reference for general_falls_faster

with

grid_domain_retention as (
    select * from grid_domain_retention
),

criterion_retention as (
    select
        model,
        calibration,
        criterion,
        -- a mean over seeds of each seed's domain retention
        avg(retention) filter (where domain = 'biomedical') as biomedical,
        avg(retention) filter (where domain = 'general') as general
    from grid_domain_retention
    where ratio = getvariable('headline_ratio')  -- params report.headline_ratio
    group by
        model,
        calibration,
        criterion
),

random_retention as (
    select
        model,
        calibration,
        biomedical as random_biomedical
    from criterion_retention
    where criterion = 'random'
),

beats_random as (
    select
        criterion_retention.model,
        criterion_retention.calibration,
        criterion_retention.criterion,
        'beats_random' as finding,
        criterion_retention.biomedical as value,
        random_retention.random_biomedical as reference
    from criterion_retention
    inner join random_retention
        on criterion_retention.model = random_retention.model
        and criterion_retention.calibration = random_retention.calibration
    where criterion_retention.criterion != 'random'
),

combined_calibrations as (
    select distinct
        model,
        calibration
    from part_scores
),

general_falls_faster as (
    select
        model,
        calibration,
        criterion,
        'general_falls_faster' as finding,
        general as value,
        biomedical as reference
    from criterion_retention
    -- a calibration made of parts (e.g. biomedical and general) is meant to keep general utility
    anti join combined_calibrations using (model, calibration)
    where criterion != 'random'
),

final as (
    select
        *,
        case finding
            when 'beats_random' then value > reference
            else value < reference
        end as holds
    from (
        select * from beats_random
        union all
        select * from general_falls_faster
    )
)

select * from final
order by model, calibration, finding, criterion
