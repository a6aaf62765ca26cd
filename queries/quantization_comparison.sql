-- table: quantization_comparison
-- The quantized rows of the study's Table 2: for each model x calibration x criterion x ratio whose
-- pruned variants were also quantized, every measure of the unquantized variants (quantization
-- 'none') beside each quantization scheme's, mean and sd over seeds. Measures are those of
-- calibration_comparison (the variant_measures view): mean primary utility per domain and task kind,
-- and judged rates per task and question. `change` is a scheme's mean minus the unquantized mean,
-- over the seeds both have; `best` marks the better mean per measure (higher utility and alignment;
-- lower hallucination, omission, repetition).
-- wide: model, calibration, criterion, ratio, quantization | measure | value_mean, value_sd, best
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set
-- column: criterion: saliency criterion
-- column: ratio: fraction of routed experts removed per MoE layer
-- column: measure: utility:<domain>:<kind>, or judged:<task>:<question>
-- column: quantization: none (the pruned checkpoint as is) or the quantization scheme
-- column: n_seeds: seeds averaged
-- column: value_mean: mean over seeds
-- column: value_sd: sample standard deviation over seeds (null with one seed)
-- column: change: value_mean minus the unquantized value_mean over the same seeds (0 for none; null when no seed has both)
-- column: best: this row has the better mean for the measure (ties: every tied row)

with

variant_measures as (
    select * from variant_measures
),

labelled as (
    select
        model,
        calibration,
        seed,
        criterion,
        ratio,
        measure,
        coalesce(quantization, 'none') as quantization,
        value,
        higher_is_better
    from variant_measures
),

quantized_configurations as (
    select distinct
        model,
        calibration,
        criterion,
        ratio
    from labelled
    where quantization <> 'none'
),

compared_seeds as (
    select
        labelled.*,
        unquantized.value as unquantized_value
    from labelled
    inner join quantized_configurations
        using (model, calibration, criterion, ratio)
    left join labelled as unquantized
        on labelled.model = unquantized.model
        and labelled.calibration = unquantized.calibration
        and labelled.seed = unquantized.seed
        and labelled.criterion = unquantized.criterion
        and labelled.ratio = unquantized.ratio
        and labelled.measure = unquantized.measure
        and unquantized.quantization = 'none'
),

per_scheme as (
    select
        model,
        calibration,
        criterion,
        ratio,
        measure,
        quantization,
        count(*) as n_seeds,
        avg(value) as value_mean,
        stddev_samp(value) as value_sd,
        avg(value - unquantized_value) as change,
        case when any_value(higher_is_better) then avg(value) else -avg(value) end as goodness
    from compared_seeds
    group by
        model,
        calibration,
        criterion,
        ratio,
        measure,
        quantization
),

final as (
    select
        model,
        calibration,
        criterion,
        ratio,
        measure,
        quantization,
        n_seeds,
        value_mean,
        value_sd,
        change,
        goodness = max(goodness) over configuration as best
    from per_scheme
    window configuration as (partition by model, calibration, criterion, ratio, measure)
)

select * from final
order by model, calibration, criterion, ratio, measure, quantization <> 'none', quantization
