-- table: judge_rates
-- What each judge says of the pruned models' outputs (the study's Figures 3 and 6), per model,
-- calibration, criterion, ratio, task, judge and question, seeds pooled. Absolute: the
-- hallucination rate, the share of the pruned outputs judged hallucinated, beside the source model's
-- rate on the same items (its dashed baseline). Relative: per question, the share of items where the
-- judge names the pruned model's summary (0.5: no preference; for q4, alignment, higher is better for
-- the pruned model, for q1-q3 lower is). Missing and invalid verdicts are left out and counted.
-- column: model: source (unpruned) model
-- column: calibration: calibration set of the pruned variants
-- column: criterion: saliency criterion
-- column: ratio: fraction of routed experts removed per MoE layer
-- column: task: judged task
-- column: rater: judge (or annotator) that gave the verdicts
-- column: protocol: absolute or relative
-- column: question: hallucinated (absolute) or one of the four relative questions
-- column: n_items: verdicts with a label on pruned outputs (absolute) or pairs (relative), over every seed
-- column: n_unlabelled: verdicts missing or invalid, left out of the rate
-- column: rate: share of labelled items judged hallucinated (absolute) or naming the pruned summary (relative)
-- column: source_rate: absolute: the source model's hallucination rate on the same items by the same rater; null for relative

with

grid_verdicts as (
    select * from grid_verdicts
),

judged as (
    select
        model,
        calibration,
        criterion,
        ratio,
        task,
        judge as rater,
        protocol,
        question,
        output,
        status,
        counted
    from grid_verdicts
),

pruned_rates as (
    select
        model,
        calibration,
        criterion,
        ratio,
        task,
        rater,
        protocol,
        question,
        count(*) filter (where status = 'ok') as n_items,
        count(*) filter (where status <> 'ok') as n_unlabelled,
        avg(counted::double) as rate
    from judged
    where output in ('pruned', 'pair')
    group by all
),

source_rates as (
    select
        model,
        calibration,
        criterion,
        ratio,
        task,
        rater,
        question,
        avg(counted::double) as source_rate
    from judged
    where output = 'source'
        and status = 'ok'
    group by all
),

final as (
    select
        pruned_rates.*,
        source_rates.source_rate
    from pruned_rates
    left join source_rates
        on pruned_rates.model = source_rates.model
        and pruned_rates.calibration is not distinct from source_rates.calibration
        and pruned_rates.criterion = source_rates.criterion
        and pruned_rates.ratio = source_rates.ratio
        and pruned_rates.task = source_rates.task
        and pruned_rates.rater = source_rates.rater
        and pruned_rates.question = source_rates.question
)

select * from final
order by model, calibration nulls last, task, protocol, question, rater, criterion, ratio
