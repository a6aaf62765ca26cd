-- table: reliability_frontier
-- How far can a model be pruned before it starts to make things up? Per model x calibration x criterion
-- x domain, the largest studied ratio at which, and at every smaller studied ratio, (1) the domain's
-- utility retention (mean over seeds of domain_retention) is at least X, and (2) every reliability
-- measure of the domain's tasks stays within delta of the source model: a reliability task's primary
-- metric (mean over seeds) at least source - delta; the absolute hallucination rate (pooled over judges
-- and seeds) at most the source model's rate + delta; the relative rates (share naming the pruned
-- summary) at most 0.5 + delta for more hallucination, omission and repetition, at least 0.5 - delta
-- for alignment. X and delta are DuckDB variables `frontier_utility` (default 0.9) and
-- `frontier_delta` (default 0.05); `expertlab report` sets them from params report.frontier. A measure
-- with no value at a ratio (e.g. no judge ran) is not checked there.
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set the experts were selected on
-- column: criterion: saliency criterion
-- column: domain: task domain whose utility and reliability are checked
-- column: utility_threshold: X, the least utility retention accepted (1 = source level)
-- column: delta: the largest accepted loss of reliability, in the measure's units (a score, a rate)
-- column: n_ratios: studied ratios with a utility retention in this domain
-- column: max_ratio: the frontier: largest ratio that passes, with every smaller ratio; null when the smallest fails
-- column: first_failing_ratio: smallest ratio that fails (null: every studied ratio passes)
-- column: failing_measures: what fails at first_failing_ratio, e.g. utility, rct_summary:rouge_l, judged:hallucinated

with

grid_domain_retention as (
    select * from grid_domain_retention
),

grid_primary_scores as (
    select * from grid_primary_scores
),

tasks as (
    select * from tasks
),

grid_verdicts as (
    select * from grid_verdicts
),

settings as (
    -- params report.frontier
    select
        getvariable('frontier_utility')::double as utility_threshold,
        getvariable('frontier_delta')::double as delta
),

utility_checks as (
    select
        grid_domain_retention.model,
        grid_domain_retention.calibration,
        grid_domain_retention.criterion,
        grid_domain_retention.ratio,
        grid_domain_retention.domain,
        'utility' as measure,
        avg(grid_domain_retention.retention) >= any_value(settings.utility_threshold) as passes
    from grid_domain_retention
    cross join settings
    group by all
),

score_checks as (
    select
        grid_primary_scores.model,
        grid_primary_scores.calibration,
        grid_primary_scores.criterion,
        grid_primary_scores.ratio,
        grid_primary_scores.domain,
        grid_primary_scores.task || ':' || grid_primary_scores.metric as measure,
        avg(grid_primary_scores.score) >= any_value(grid_primary_scores.source_score) - any_value(settings.delta)
            as passes
    from grid_primary_scores
    cross join settings
    where grid_primary_scores.aspect = 'reliability'
        and grid_primary_scores.source_score is not null
    group by all
),

judged as (
    select
        grid_verdicts.model,
        grid_verdicts.calibration,
        grid_verdicts.criterion,
        grid_verdicts.ratio,
        tasks.domain,
        grid_verdicts.question,
        grid_verdicts.output,
        grid_verdicts.counted::double as named
    from grid_verdicts
    inner join tasks
        on grid_verdicts.task = tasks.task
    where grid_verdicts.status = 'ok'
),

judged_rates as (
    select
        model,
        calibration,
        criterion,
        ratio,
        domain,
        question,
        avg(named) filter (where output in ('pruned', 'pair')) as rate,
        avg(named) filter (where output = 'source') as source_rate
    from judged
    group by all
),

judged_checks as (
    select
        judged_rates.model,
        judged_rates.calibration,
        judged_rates.criterion,
        judged_rates.ratio,
        judged_rates.domain,
        'judged:' || judged_rates.question as measure,
        case judged_rates.question
            when 'hallucinated' then judged_rates.rate <= judged_rates.source_rate + settings.delta
            when 'q4_alignment_more' then judged_rates.rate >= 0.5 - settings.delta
            else judged_rates.rate <= 0.5 + settings.delta
        end as passes
    from judged_rates
    cross join settings
    where judged_rates.rate is not null
        and (judged_rates.question <> 'hallucinated' or judged_rates.source_rate is not null)
),

checks as (
    select * from utility_checks
    union all
    select * from score_checks
    union all
    select * from judged_checks
),

ratio_verdicts as (
    -- a ratio is studied in a domain when it has a utility retention there
    select
        checks.model,
        checks.calibration,
        checks.criterion,
        checks.ratio,
        checks.domain,
        bool_and(checks.passes) as passes,
        string_agg(checks.measure, ', ' order by checks.measure) filter (where not checks.passes) as failing
    from checks
    inner join utility_checks
        on checks.model = utility_checks.model
        and checks.calibration = utility_checks.calibration
        and checks.criterion = utility_checks.criterion
        and checks.ratio = utility_checks.ratio
        and checks.domain = utility_checks.domain
    group by all
),

frontiers as (
    select
        model,
        calibration,
        criterion,
        domain,
        count(*) as n_ratios,
        min(ratio) filter (where not passes) as first_failing_ratio
    from ratio_verdicts
    group by all
),

final as (
    select
        frontiers.model,
        frontiers.calibration,
        frontiers.criterion,
        frontiers.domain,
        any_value(settings.utility_threshold) as utility_threshold,
        any_value(settings.delta) as delta,
        any_value(frontiers.n_ratios) as n_ratios,
        max(ratio_verdicts.ratio) filter (
            where frontiers.first_failing_ratio is null or ratio_verdicts.ratio < frontiers.first_failing_ratio
        ) as max_ratio,
        any_value(frontiers.first_failing_ratio) as first_failing_ratio,
        any_value(ratio_verdicts.failing) filter (
            where ratio_verdicts.ratio = frontiers.first_failing_ratio
        ) as failing_measures
    from frontiers
    inner join ratio_verdicts
        on frontiers.model = ratio_verdicts.model
        and frontiers.calibration = ratio_verdicts.calibration
        and frontiers.criterion = ratio_verdicts.criterion
        and frontiers.domain = ratio_verdicts.domain
    cross join settings
    group by all
)

select * from final
order by model, calibration, domain, criterion
