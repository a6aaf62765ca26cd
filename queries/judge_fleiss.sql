-- table: judge_fleiss
-- Agreement among all raters of one kind (the study's Tables 4 and 5: its three LLM judges): Fleiss'
-- kappa per protocol, task, question, judged output and judge kind, over all pruning ratios. The
-- raters of a group are those of the kind with any verdict in it; its items are the judged items
-- (sample, variant) that every one of them labelled (status ok), so an item one rater left
-- missing or invalid is left out for all. With n raters, N items and n_ij raters giving item i label j:
-- P_i = (sum_j n_ij^2 - n) / (n (n - 1)), p_observed = mean_i P_i, p_j = sum_i n_ij / (N n),
-- p_expected = sum_j p_j^2, kappa = (p_observed - p_expected) / (1 - p_expected) (Fleiss 1971; with
-- two raters it is Scott's pi, not Cohen's kappa). Every rater giving every item the same label
-- (p_expected = 1, then p_observed = 1 too) counts as kappa 1, as in judge_agreement. A group with
-- fewer than two raters, or with no item labelled by all of them, has no row. Unlike judge_agreement,
-- ratios are not split into windows, relative questions are not pooled, and absolute verdicts on the
-- source model's outputs get rows of their own (output = source).
-- column: protocol: absolute (faithful or hallucinated) or relative (pruned or source summary named)
-- column: dataset: task of the judged items (the release's RCT and Multi-X-Science are imported as rct_summary and multixscience_summary)
-- column: question: hallucinated (absolute); q1_hallucinations_more .. q4_alignment_more (relative)
-- column: output: what was judged: the pruned or the source model's output (absolute), the pair (relative)
-- column: rater_kind: judge kind, llm (judge models) or human (annotators): kappa is among raters of this kind only
-- column: n_raters: raters of the kind with a verdict in the group
-- column: n_items: judged items every one of the raters labelled, the items kappa is computed over
-- column: p_observed: mean over items of the share of rater pairs that agree (Fleiss' P-bar)
-- column: p_expected: agreement expected by chance: sum over labels of the label's squared share of all labels
-- column: kappa: Fleiss' kappa, (p_observed - p_expected) / (1 - p_expected); 1 when p_expected = 1

with

judgments as (
    select * from judgments
),

groups as (
    select
        protocol,
        task,
        question,
        output,
        judge_kind,
        count(distinct judge) as n_raters
    from judgments
    group by all
    having count(distinct judge) >= 2
),

labelled as (
    select
        protocol,
        task,
        question,
        output,
        judge_kind,
        sample_id,
        variant_id,
        judge,
        label
    from judgments
    -- missing and invalid verdicts carry no label
    where status = 'ok'
),

complete_items as (
    -- the items every judge of the group labelled (the store's key: one verdict per judge and item)
    select
        labelled.protocol,
        labelled.task,
        labelled.question,
        labelled.output,
        labelled.judge_kind,
        labelled.sample_id,
        labelled.variant_id,
        groups.n_raters
    from labelled
    inner join groups
        on labelled.protocol = groups.protocol
        and labelled.task = groups.task
        and labelled.question = groups.question
        and labelled.output = groups.output
        and labelled.judge_kind = groups.judge_kind
    group by all
    having count(*) = groups.n_raters
),

label_counts as (
    -- n_ij: raters giving item i label j
    select
        complete_items.protocol,
        complete_items.task,
        complete_items.question,
        complete_items.output,
        complete_items.judge_kind,
        complete_items.sample_id,
        complete_items.variant_id,
        complete_items.n_raters,
        labelled.label,
        count(*) as n_label
    from complete_items
    inner join labelled
        on complete_items.protocol = labelled.protocol
        and complete_items.task = labelled.task
        and complete_items.question = labelled.question
        and complete_items.output = labelled.output
        and complete_items.judge_kind = labelled.judge_kind
        and complete_items.sample_id = labelled.sample_id
        and complete_items.variant_id = labelled.variant_id
    group by all
),

item_agreement as (
    select
        protocol,
        task,
        question,
        output,
        judge_kind,
        sample_id,
        variant_id,
        n_raters,
        sum(n_label * n_label) as sum_squares
    from label_counts
    group by all
),

observed as (
    select
        protocol,
        task,
        question,
        output,
        judge_kind,
        n_raters,
        count(*) as n_items,
        -- P_i = (sum_j n_ij^2 - n) / (n (n - 1)): the share of the item's judge pairs that agree
        avg((sum_squares - n_raters)::double / (n_raters * (n_raters - 1))) as p_observed
    from item_agreement
    group by all
),

label_totals as (
    -- n p_j N: labels of each kind over the group's items
    select
        protocol,
        task,
        question,
        output,
        judge_kind,
        label,
        sum(n_label) as n_label
    from label_counts
    group by all
),

expected as (
    -- p_j = the label's share of all n N labels; p_expected = sum_j p_j^2
    select
        observed.protocol,
        observed.task,
        observed.question,
        observed.output,
        observed.judge_kind,
        sum(power(label_totals.n_label::double / (observed.n_items * observed.n_raters), 2)) as p_expected
    from observed
    inner join label_totals
        on observed.protocol = label_totals.protocol
        and observed.task = label_totals.task
        and observed.question = label_totals.question
        and observed.output = label_totals.output
        and observed.judge_kind = label_totals.judge_kind
    group by all
),

final as (
    select
        observed.protocol,
        observed.task as dataset,
        observed.question,
        observed.output,
        observed.judge_kind as rater_kind,
        observed.n_raters,
        observed.n_items,
        observed.p_observed,
        expected.p_expected,
        -- p_expected = 1: one label throughout (then p_observed = 1 too), counted as full agreement
        case
            when expected.p_expected >= 1 then 1.0
            else (observed.p_observed - expected.p_expected) / (1 - expected.p_expected)
        end as kappa
    from observed
    inner join expected
        on observed.protocol = expected.protocol
        and observed.task = expected.task
        and observed.question = expected.question
        and observed.output = expected.output
        and observed.judge_kind = expected.judge_kind
)

select * from final
order by
    protocol,
    dataset,
    question,
    output,
    rater_kind
