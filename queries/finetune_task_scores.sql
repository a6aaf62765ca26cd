-- table: finetune_task_scores
-- The second study's per-task comparison of fine-tuning strategies (paper 001, Figs. 5 and 7c): per model,
-- strategy and utility task, the primary score, mean and sd over fine-tuning seeds; whether the task is in the
-- fine-tuning target domain (the domain of its expert selection, expert_selection_runs.domain, named as the
-- tasks' domains are); and the relative margin against full fine-tuning, (mean - full's mean) / full's mean.
-- Strategy `source` is the model before fine-tuning.
-- column: model: base model name
-- column: strategy: fine-tuning strategy (full, af, edmrs, lora, ...), or source (not fine-tuned)
-- column: task: evaluation task
-- column: domain: the task's domain
-- column: in_domain: the task is in the fine-tuning target domain
-- column: n_seeds: fine-tuning seeds averaged
-- column: score_mean: primary score, mean over seeds
-- column: score_sd: sample standard deviation over seeds (null with one seed)
-- column: vs_full: (score_mean - full's score_mean) / full's score_mean; null without a full run or where it scores 0

with

finetune_primary_scores as (
    select * from finetune_primary_scores
),

expert_selection_runs as (
    select * from expert_selection_runs
),

tuned as (
    select
        model,
        finetune as strategy,
        task,
        domain,
        score,
        source_score
    from finetune_primary_scores
    where aspect = 'utility'
),

before as (
    select distinct
        model,
        'source' as strategy,
        task,
        domain,
        source_score as score
    from tuned
    where source_score is not null
),

per_strategy as (
    select
        model,
        strategy,
        task,
        any_value(domain)::varchar as domain,
        count(*) as n_seeds,
        avg(score) as score_mean,
        stddev_samp(score) as score_sd
    from (select * exclude (source_score) from tuned union all select * from before)
    group by model, strategy, task
),

final as (
    select
        per_strategy.model,
        per_strategy.strategy,
        per_strategy.task,
        per_strategy.domain,
        per_strategy.domain = expert_selection_runs.domain as in_domain,
        per_strategy.n_seeds,
        per_strategy.score_mean,
        per_strategy.score_sd,
        (per_strategy.score_mean - full_run.score_mean) / nullif(full_run.score_mean, 0) as vs_full
    from per_strategy
    left join expert_selection_runs
        on per_strategy.model = expert_selection_runs.model
    left join per_strategy as full_run
        on per_strategy.model = full_run.model
        and per_strategy.task = full_run.task
        and full_run.strategy = 'full'
)

select * from final
order by model, strategy <> 'source', strategy, in_domain desc, task
