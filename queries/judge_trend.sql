-- table: judge_trend
-- Does pruning harder make a model make more things up? Spearman's rho between the pruning ratio and
-- the judged rate, per model x calibration x criterion x task x judge x question, over the ratios
-- judged (one point per ratio: the rate pooled over seeds, as in judge_rates; the source model is not
-- a point). rho is the Pearson correlation of average ranks (ties share the mean of their ranks);
-- it is null with fewer than three ratios or when the rate does not vary. Absolute: rate = share of
-- pruned outputs judged hallucinated; relative: share of pairs naming the pruned summary.
-- column: model: source (unpruned) model
-- column: calibration: calibration set of the pruned variants
-- column: criterion: saliency criterion
-- column: task: judged task
-- column: rater: judge (or annotator) that gave the verdicts
-- column: protocol: absolute or relative
-- column: question: hallucinated (absolute) or one of the four relative questions
-- column: n_ratios: ratios with at least one labelled verdict
-- column: rate_at_lowest: rate at the smallest of those ratios
-- column: rate_at_highest: rate at the largest of those ratios
-- column: spearman_rho: Spearman's rank correlation between ratio and rate (1: the rate rises with every step)

with

grid_verdicts as (
    select * from grid_verdicts
),

labelled as (
    select
        model,
        calibration,
        criterion,
        task,
        judge as rater,
        protocol,
        question,
        ratio,
        counted::double as named
    from grid_verdicts
    where status = 'ok'
        and output in ('pruned', 'pair')
),

rates as (
    select
        model,
        calibration,
        criterion,
        task,
        rater,
        protocol,
        question,
        ratio,
        avg(named) as rate
    from labelled
    group by all
),

ranked as (
    select
        *,
        rank() over series_by_ratio
        + (count(*) over (partition by model, calibration, criterion, task, rater, protocol, question, ratio) - 1) / 2.0
            as ratio_rank,
        rank() over series_by_rate
        + (count(*) over (partition by model, calibration, criterion, task, rater, protocol, question, rate) - 1) / 2.0
            as rate_rank,
        first_value(rate) over series_by_ratio as rate_at_lowest,
        last_value(rate) over (
            series_by_ratio rows between unbounded preceding and unbounded following
        ) as rate_at_highest
    from rates
    window
        series_by_ratio as (
            partition by model, calibration, criterion, task, rater, protocol, question order by ratio
        ),
        series_by_rate as (
            partition by model, calibration, criterion, task, rater, protocol, question order by rate
        )
),

final as (
    select
        model,
        calibration,
        criterion,
        task,
        rater,
        protocol,
        question,
        count(*) as n_ratios,
        any_value(rate_at_lowest) as rate_at_lowest,
        any_value(rate_at_highest) as rate_at_highest,
        case
            when count(*) >= 3 and stddev_pop(rate) > 0 then corr(ratio_rank, rate_rank)
        end as spearman_rho
    from ranked
    group by all
)

select * from final
order by model, calibration nulls last, task, protocol, question, rater, criterion
