-- table: reliability_scores
-- Every metric of the reliability tasks vs pruning ratio (the study's Figure 4, MedHALT accuracy and
-- points, and Figure 7, summaries' ROUGE-L, BERTScore, type-token ratio and length): per model x
-- calibration x criterion x ratio x task x metric, mean and sd over seeds, beside the source model's
-- value and the change from it. Utility tasks are in utility_retention and task_scores_at_half.
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set the experts were selected on
-- column: criterion: saliency criterion
-- column: ratio: fraction of routed experts removed per MoE layer
-- column: task: reliability task
-- column: kind: generation (judged summaries) or classification (MedHALT-style)
-- column: metric: one of the task's metrics (task_scores)
-- column: n_seeds: calibration seeds averaged
-- column: value_mean: mean over seeds of the variant's value
-- column: value_sd: sample standard deviation over seeds (null with one seed)
-- column: source_value: the source model's value (null when the source was not scored)
-- column: change: value_mean - source_value

with

task_scores as (
    select * from task_scores
),

tasks as (
    select * from tasks
),

grid_variants as (
    select * from grid_variants
),

source_task_scores as (
    select * from source_task_scores
),

reliability as (
    select
        grid_variants.model,
        grid_variants.calibration,
        grid_variants.seed,
        grid_variants.criterion,
        grid_variants.ratio,
        task_scores.task,
        tasks.kind,
        task_scores.metric,
        task_scores.value
    from task_scores
    inner join tasks
        on task_scores.task = tasks.task
    inner join grid_variants
        on task_scores.variant_id = grid_variants.variant_id
    where tasks.aspect = 'reliability'
        and not grid_variants.is_source
),

pruned as (
    select
        model,
        calibration,
        criterion,
        ratio,
        task,
        kind,
        metric,
        count(*) as n_seeds,
        avg(value) as value_mean,
        stddev_samp(value) as value_sd
    from reliability
    group by all
),

final as (
    select
        pruned.*,
        source_task_scores.value as source_value,
        pruned.value_mean - source_task_scores.value as change
    from pruned
    left join source_task_scores
        on pruned.model = source_task_scores.model
        and pruned.task = source_task_scores.task
        and pruned.metric = source_task_scores.metric
)

select * from final
order by model, calibration, task, metric, criterion, ratio
