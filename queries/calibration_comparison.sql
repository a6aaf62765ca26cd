-- table: calibration_comparison
-- The calibration rows of the study's Table 2 (its quantized row: quantization_comparison): for each model x criterion x ratio pruned under more than one
-- calibration set, every calibration's utility and judged reliability side by side, mean and sd over
-- seeds. Utility measures are the mean primary scores (not retention) of the biomedical generation,
-- biomedical classification and general-domain utility tasks; reliability measures are the judged
-- rates per task and question (pooled over judges). `best` marks, per measure, the calibration with the
-- better mean (higher utility, alignment; lower hallucination, omission, repetition). Configurations
-- pruned under one calibration only are left out, and so are quantized variants. Measures: the
-- variant_measures view.
-- wide: model, criterion, ratio, calibration | measure | value_mean, value_sd, best
-- column: model: base model the variants were pruned from
-- column: criterion: saliency criterion
-- column: ratio: fraction of routed experts removed per MoE layer
-- column: measure: utility:<domain>:<kind>, or judged:<task>:<question>
-- column: calibration: calibration set
-- column: n_seeds: seeds averaged
-- column: value_mean: mean over seeds
-- column: value_sd: sample standard deviation over seeds (null with one seed)
-- column: best: this calibration has the better mean for the measure (ties: every tied calibration)

with

grid_variant_measures as (
    select * from grid_variant_measures
),

per_calibration as (
    select
        model,
        criterion,
        ratio,
        measure,
        calibration,
        count(*) as n_seeds,
        avg(value) as value_mean,
        stddev_samp(value) as value_sd,
        any_value(higher_is_better) as higher_is_better
    from grid_variant_measures
    group by
        model,
        criterion,
        ratio,
        measure,
        calibration
),

oriented as (
    select
        *,
        case when higher_is_better then value_mean else -value_mean end as goodness
    from per_calibration
),

compared as (
    select
        *,
        count(*) over configuration as n_calibrations,
        goodness = max(goodness) over configuration as best
    from oriented
    window configuration as (partition by model, criterion, ratio, measure)
),

final as (
    select
        model,
        criterion,
        ratio,
        measure,
        calibration,
        n_seeds,
        value_mean,
        value_sd,
        best
    from compared
    where n_calibrations > 1
)

select * from final
order by model, criterion, ratio, measure, calibration
