-- table: finetune_task_scores
-- The second study's per-task comparison of fine-tuning strategies (paper 001, Figs. 5 and 7c): per model,
-- strategy and utility task, the primary score, mean and sd over fine-tuning seeds; whether the task is in the
-- fine-tuning target domain (the domain of its expert selection, expert_selection_runs.domain, named as the
-- tasks' domains are); and the relative margin against full fine-tuning, (mean - full's mean) / full's mean.
-- Strategy `source` is the model before fine-tuning. From the store's finetune_utility.
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

finetune_utility as (
    select * from finetune_utility
),

per_strategy as (
    select
        model,
        strategy,
        task,
        any_value(domain) as domain,
        any_value(in_domain) as in_domain,
        count(*) as n_seeds,
        avg(score) as score_mean,
        stddev_samp(score) as score_sd
    from finetune_utility
    group by model, strategy, task
),

final as (
    select
        per_strategy.model,
        per_strategy.strategy,
        per_strategy.task,
        per_strategy.domain,
        per_strategy.in_domain,
        per_strategy.n_seeds,
        per_strategy.score_mean,
        per_strategy.score_sd,
        (per_strategy.score_mean - full_run.score_mean) / nullif(full_run.score_mean, 0) as vs_full
    from per_strategy
    left join per_strategy as full_run
        on per_strategy.model = full_run.model
        and per_strategy.task = full_run.task
        and full_run.strategy = 'full'
)

select * from final
order by model, strategy <> 'source', strategy, in_domain desc, task
