-- table: judge_agreement
-- Agreement between raters on the reliability judgments (the study's Table 1): Cohen's kappa of every
-- pair of raters within a category (llm-llm, human-llm, human-human), averaged over the category's pairs,
-- per protocol and pruning-ratio window (Low p <= 0.25, Moderate 0.375 <= p <= 0.5, Extreme p >= 0.625).
-- Per pair, kappa = (p_o - p_e) / (1 - p_e) over the items both raters labelled (a missing or invalid
-- verdict leaves the item out for that pair only); two raters who are both constant and equal
-- (p_e = 1) count as kappa 1. Relative answers are pooled over the four questions per pair before
-- kappa is computed. Absolute agreement is on the pruned model's output only: the source outputs'
-- verdicts stay in `judgments` but are not counted, the reading that reproduces all six LLM-LLM
-- numbers of Table 1 from the released verdicts (with them, Moderate and Extreme fall to .567 and
-- .662); likewise the two null absolute verdicts are left out per pair (read as faithful, Moderate
-- would be .652). Human rows appear only when human judgments are in the store.
-- column: protocol: absolute (faithful or hallucinated) or relative (pruned or source summary named, four questions pooled)
-- column: window: pruning-ratio window: Low (p <= 0.25), Moderate (0.375 <= p <= 0.5), Extreme (p >= 0.625)
-- column: rater_pair: category of the rater pairs averaged: llm-llm, human-llm or human-human
-- column: n_items: judged items in the window that enter at least one pair's kappa (Table 1's N)
-- column: n_rater_pairs: rater pairs averaged
-- column: kappa: mean over the category's rater pairs of Cohen's kappa

with

judgments as (
    select * from judgments
),

variants as (
    select * from variants
),

windows as (
    -- params report.agreement_windows: each window's lowest and highest ratio, bounds included
    select
        agreement_window.name,
        agreement_window.low,
        agreement_window.high
    from unnest(getvariable('agreement_windows')) as windows (agreement_window)
),

labelled as (
    select
        judgments.protocol,
        windows.name as window_name,
        judgments.judge,
        judgments.judge_kind,
        judgments.question,
        judgments.task,
        judgments.sample_id,
        judgments.variant_id,
        judgments.label
    from judgments
    -- the ratio is the judged variant's
    inner join variants
        on judgments.variant_id = variants.variant_id
    inner join windows
        on variants.ratio between windows.low and windows.high
    -- missing and invalid verdicts carry no label; absolute: the pruned output only (see above)
    where judgments.status = 'ok'
        and judgments.output in ('pruned', 'pair')
),

pair_labels as (
    select
        a.protocol,
        a.window_name,
        a.judge as rater_a,
        b.judge as rater_b,
        case
            when a.judge_kind = 'llm' and b.judge_kind = 'llm' then 'llm-llm'
            when a.judge_kind = 'human' and b.judge_kind = 'human' then 'human-human'
            else 'human-llm'
        end as rater_pair,
        a.task || chr(31) || a.sample_id || chr(31) || a.variant_id as item,
        a.label as label_a,
        b.label as label_b
    from labelled as a
    inner join labelled as b
        on a.protocol = b.protocol
        and a.window_name = b.window_name
        and a.question = b.question
        and a.task = b.task
        and a.sample_id = b.sample_id
        and a.variant_id = b.variant_id
        and a.judge < b.judge
),

observed as (
    select
        protocol,
        window_name,
        rater_pair,
        rater_a,
        rater_b,
        count(*) as n_labels,
        avg(case when label_a = label_b then 1.0 else 0.0 end) as p_observed
    from pair_labels
    group by all
),

marginals_a as (
    select
        protocol,
        window_name,
        rater_a,
        rater_b,
        label_a as label,
        count(*) as n
    from pair_labels
    group by all
),

marginals_b as (
    select
        protocol,
        window_name,
        rater_a,
        rater_b,
        label_b as label,
        count(*) as n
    from pair_labels
    group by all
),

chance as (
    select
        marginals_a.protocol,
        marginals_a.window_name,
        marginals_a.rater_a,
        marginals_a.rater_b,
        sum(marginals_a.n * marginals_b.n) as n_chance_pairs
    from marginals_a
    inner join marginals_b
        on marginals_a.protocol = marginals_b.protocol
        and marginals_a.window_name = marginals_b.window_name
        and marginals_a.rater_a = marginals_b.rater_a
        and marginals_a.rater_b = marginals_b.rater_b
        and marginals_a.label = marginals_b.label
    group by all
),

pair_kappas as (
    select
        observed.protocol,
        observed.window_name,
        observed.rater_pair,
        -- p_e = sum over labels of the two raters' label shares; 0 when they share no label
        coalesce(chance.n_chance_pairs, 0) / (observed.n_labels * observed.n_labels) as p_expected,
        observed.p_observed
    from observed
    left join chance
        on observed.protocol = chance.protocol
        and observed.window_name = chance.window_name
        and observed.rater_a = chance.rater_a
        and observed.rater_b = chance.rater_b
),

items as (
    select
        protocol,
        window_name,
        rater_pair,
        count(distinct item) as n_items
    from pair_labels
    group by all
),

kappas as (
    select
        protocol,
        window_name,
        rater_pair,
        count(*) as n_rater_pairs,
        -- p_e = 1: both raters constant and equal (then p_o = 1 too), counted as full agreement
        avg(
            case
                when p_expected >= 1 then 1.0
                else (p_observed - p_expected) / (1 - p_expected)
            end
        ) as kappa
    from pair_kappas
    group by all
),

final as (
    select
        kappas.protocol,
        kappas.window_name as "window",
        kappas.rater_pair,
        items.n_items,
        kappas.n_rater_pairs,
        kappas.kappa
    from kappas
    inner join items
        on kappas.protocol = items.protocol
        and kappas.window_name = items.window_name
        and kappas.rater_pair = items.rater_pair
)

select * from final
order by
    protocol,
    -- the windows in params order
    list_position([agreement_window.name for agreement_window in getvariable('agreement_windows')], "window"),
    rater_pair
