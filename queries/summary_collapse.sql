-- table: summary_collapse
-- The summary-collapse audit (the study's Observation 3: overlap metrics hide reliability loss). Per
-- model x calibration x criterion x ratio x summary task (a reliability generation task): length and
-- type-token ratio beside the source model's, the relative change of ROUGE-L and BERTScore, the judged
-- hallucination rate (absolute, pooled over judges and seeds) beside the source model's, and the
-- omission rate (relative q2, share of pairs where the pruned summary omits more). `flagged` marks a
-- variant whose ROUGE-L and BERTScore (those scored) stay within 2% of the source's while its
-- hallucination rate rises above the source's or its omission rate above 0.5.
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set the experts were selected on
-- column: criterion: saliency criterion
-- column: ratio: fraction of routed experts removed per MoE layer
-- column: task: summary task
-- column: length_words: mean summary length in words (mean over seeds)
-- column: source_length_words: the source model's mean summary length
-- column: type_token_ratio: mean type-token ratio (lower: more repetition)
-- column: source_type_token_ratio: the source model's mean type-token ratio
-- column: rouge_l_change: (ROUGE-L - source ROUGE-L) / source ROUGE-L
-- column: bertscore_change: (BERTScore - source BERTScore) / source BERTScore; null when not scored
-- column: hallucination_rate: share of pruned summaries judged hallucinated; null when not judged
-- column: source_hallucination_rate: share of the source model's summaries judged hallucinated, on the same items
-- column: omission_rate: share of pairs whose judge names the pruned summary as omitting more; null when not judged
-- column: overlap_stable: every scored overlap metric (ROUGE-L, BERTScore) within 2% of the source's
-- column: flagged: overlap_stable while the hallucination rate exceeds the source's or the omission rate exceeds 0.5

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

grid_verdicts as (
    select * from grid_verdicts
),

source_task_scores as (
    select * from source_task_scores
),

scores as (
    -- mean over seeds
    select
        grid_variants.model,
        grid_variants.calibration,
        grid_variants.criterion,
        grid_variants.ratio,
        task_scores.task,
        task_scores.metric,
        avg(task_scores.value) as value
    from task_scores
    inner join tasks
        on task_scores.task = tasks.task
    inner join grid_variants
        on task_scores.variant_id = grid_variants.variant_id
    where tasks.aspect = 'reliability'
        and tasks.kind = 'generation'
        and task_scores.metric in ('length_words', 'type_token_ratio', 'rouge_l', 'bertscore')
        and not grid_variants.is_source
    group by all
),

compared as (
    select
        scores.model,
        scores.calibration,
        scores.criterion,
        scores.ratio,
        scores.task,
        scores.metric,
        scores.value,
        source_task_scores.value as source_value
    from scores
    left join source_task_scores
        on scores.model = source_task_scores.model
        and scores.task = source_task_scores.task
        and scores.metric = source_task_scores.metric
),

judged_variants as (
    -- pooled over judges and seeds
    select
        model,
        calibration,
        criterion,
        ratio,
        task,
        avg(counted::double) filter (where question = 'hallucinated' and output = 'pruned') as hallucination_rate,
        avg(counted::double) filter (where question = 'hallucinated' and output = 'source')
            as source_hallucination_rate,
        avg(counted::double) filter (where question = 'q2_omission_more') as omission_rate
    from grid_verdicts
    where status = 'ok'
    group by all
),

audited as (
    select
        model,
        calibration,
        criterion,
        ratio,
        task,
        any_value(value) filter (where metric = 'length_words') as length_words,
        any_value(source_value) filter (where metric = 'length_words') as source_length_words,
        any_value(value) filter (where metric = 'type_token_ratio') as type_token_ratio,
        any_value(source_value) filter (where metric = 'type_token_ratio') as source_type_token_ratio,
        any_value((value - source_value) / nullif(source_value, 0)) filter (where metric = 'rouge_l') as rouge_l_change,
        any_value((value - source_value) / nullif(source_value, 0)) filter (where metric = 'bertscore')
            as bertscore_change,
        -- params report.collapse.overlap_band
        bool_and(abs(value - source_value) <= getvariable('collapse_overlap_band') * abs(source_value)) filter (
            where metric in ('rouge_l', 'bertscore')
        ) as overlap_stable
    from compared
    group by all
),

final as (
    select
        audited.model,
        audited.calibration,
        audited.criterion,
        audited.ratio,
        audited.task,
        audited.length_words,
        audited.source_length_words,
        audited.type_token_ratio,
        audited.source_type_token_ratio,
        audited.rouge_l_change,
        audited.bertscore_change,
        judged_variants.hallucination_rate,
        judged_variants.source_hallucination_rate,
        judged_variants.omission_rate,
        coalesce(audited.overlap_stable, false) as overlap_stable,
        coalesce(audited.overlap_stable, false) and coalesce(
            judged_variants.hallucination_rate > judged_variants.source_hallucination_rate
            or judged_variants.omission_rate > getvariable('collapse_omission_rate'),  -- params report.collapse
            false
        ) as flagged
    from audited
    left join judged_variants
        on audited.model = judged_variants.model
        and audited.calibration = judged_variants.calibration
        and audited.criterion = judged_variants.criterion
        and audited.ratio = judged_variants.ratio
        and audited.task = judged_variants.task
)

select * from final
order by model, calibration, task, criterion, ratio
