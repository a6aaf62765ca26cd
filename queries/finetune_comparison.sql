-- table: finetune_comparison
-- The second study's headline (paper 001, Figs. 4, 6a-b and 7a-b): per model and fine-tuning strategy, the
-- in-domain score (mean primary score over the utility tasks of the fine-tuning target domain,
-- expert_selection_runs.domain) and the out-of-domain score (over every other utility task), each mean and sd over
-- fine-tuning seeds; their relative margins against full fine-tuning and against AF, (mean - theirs) / theirs, as
-- the paper reports them; and whether the strategy kept more out-of-domain score than full fine-tuning. Strategy
-- `source` is the model before fine-tuning. From the store's finetune_utility.
-- column: model: base model name
-- column: strategy: fine-tuning strategy (full, af, edmrs, lora, ...), or source (not fine-tuned)
-- column: n_seeds: fine-tuning seeds averaged
-- column: in_domain_mean: mean over seeds of the mean in-domain primary score
-- column: in_domain_sd: its sample standard deviation over seeds (null with one seed)
-- column: out_of_domain_mean: mean over seeds of the mean out-of-domain primary score
-- column: out_of_domain_sd: its sample standard deviation over seeds (null with one seed)
-- column: in_domain_vs_full: (in_domain_mean - full's) / full's
-- column: out_of_domain_vs_full: (out_of_domain_mean - full's) / full's
-- column: in_domain_vs_af: (in_domain_mean - af's) / af's
-- column: out_of_domain_vs_af: (out_of_domain_mean - af's) / af's
-- column: keeps_more_than_full: out_of_domain_mean above full fine-tuning's (null for full itself or without a full run)
-- column: trained_layers: MoE layers whose experts it trained (one each for edmrs_l0, edmrs_l1, ...: Fig. 6c); null if it selects none
-- column: n_in_domain_tasks: in-domain tasks averaged
-- column: n_out_of_domain_tasks: out-of-domain tasks averaged

with

finetune_utility as (
    select * from finetune_utility
),

expert_selections as (
    select * from expert_selections
),

trained as (
    select
        model,
        strategy,
        list(distinct layer order by layer) as trained_layers
    from expert_selections
    group by model, strategy
),

per_run as (
    select
        model,
        strategy,
        finetune_seed,
        avg(score) filter (where in_domain) as in_domain,
        avg(score) filter (where not in_domain) as out_of_domain,
        count(distinct task) filter (where in_domain) as n_in_domain_tasks,
        count(distinct task) filter (where not in_domain) as n_out_of_domain_tasks
    from finetune_utility
    where in_domain is not null
    group by model, strategy, finetune_seed
),

per_strategy as (
    select
        model,
        strategy,
        count(*) as n_seeds,
        avg(in_domain) as in_domain_mean,
        stddev_samp(in_domain) as in_domain_sd,
        avg(out_of_domain) as out_of_domain_mean,
        stddev_samp(out_of_domain) as out_of_domain_sd,
        max(n_in_domain_tasks) as n_in_domain_tasks,
        max(n_out_of_domain_tasks) as n_out_of_domain_tasks
    from per_run
    group by model, strategy
),

final as (
    select
        per_strategy.model,
        per_strategy.strategy,
        per_strategy.n_seeds,
        per_strategy.in_domain_mean,
        per_strategy.in_domain_sd,
        per_strategy.out_of_domain_mean,
        per_strategy.out_of_domain_sd,
        (per_strategy.in_domain_mean - full_run.in_domain_mean) / nullif(full_run.in_domain_mean, 0) as in_domain_vs_full,
        (per_strategy.out_of_domain_mean - full_run.out_of_domain_mean) / nullif(full_run.out_of_domain_mean, 0) as out_of_domain_vs_full,
        (per_strategy.in_domain_mean - af_run.in_domain_mean) / nullif(af_run.in_domain_mean, 0) as in_domain_vs_af,
        (per_strategy.out_of_domain_mean - af_run.out_of_domain_mean) / nullif(af_run.out_of_domain_mean, 0) as out_of_domain_vs_af,
        case
            when per_strategy.strategy <> 'full' then per_strategy.out_of_domain_mean > full_run.out_of_domain_mean
        end as keeps_more_than_full,
        trained.trained_layers,
        per_strategy.n_in_domain_tasks,
        per_strategy.n_out_of_domain_tasks
    from per_strategy
    left join trained
        on per_strategy.model = trained.model
        and per_strategy.strategy = trained.strategy
    left join per_strategy as full_run
        on per_strategy.model = full_run.model
        and full_run.strategy = 'full'
    left join per_strategy as af_run
        on per_strategy.model = af_run.model
        and af_run.strategy = 'af'
)

select * from final
order by model, strategy <> 'source', strategy
