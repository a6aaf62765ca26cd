-- table: expert_overlap
-- How much two criteria agree on which experts to keep (the study's Section 5 statements on EAN's
-- low overlap): for variants of one model, calibration set and ratio, the overlap of two masks is the
-- mean over MoE layers of |A ∩ B| / M (A, B the layer's kept experts, M = |A| = |B| experts kept per
-- layer), and a criterion pair's overlap is the mean over every pair of calibration seeds, one
-- variant of each criterion (seeds 0, 1, 2 x 0, 1, 2: nine pairs; equal seeds are not preferred).
-- Masks from any origin count (pipeline or imported); a layer two masks share no expert in counts 0.
-- column: model: base model the variants were pruned from
-- column: calibration: calibration set both criteria selected their experts on
-- column: ratio: fraction of routed experts removed per MoE layer
-- column: criterion_a: first criterion of the pair, the earlier in the criteria registry (the store's criterion ENUM order)
-- column: criterion_b: second criterion of the pair
-- column: n_seed_pairs: (seed of criterion_a, seed of criterion_b) pairs averaged
-- column: overlap: mean over seed pairs of the mean over layers of |A ∩ B| / M; 1 = identical masks

with

expert_masks as (
    select * from expert_masks
),

grid_variants as (
    select * from grid_variants
),

kept as (
    select
        grid_variants.variant_id,
        grid_variants.model,
        grid_variants.calibration,
        grid_variants.ratio,
        grid_variants.criterion,
        expert_masks.layer,
        expert_masks.expert
    from expert_masks
    inner join grid_variants
        on expert_masks.variant_id = grid_variants.variant_id
    where expert_masks.kept
        and not grid_variants.is_source
),

layer_sizes as (
    -- M per (variant, layer)
    select
        variant_id,
        model,
        calibration,
        ratio,
        criterion,
        layer,
        count(*) as n_kept
    from kept
    group by all
),

mask_pairs as (
    -- every (variant of one criterion, variant of another) at the same model, calibration, ratio and layer
    select
        a.model,
        a.calibration,
        a.ratio,
        a.criterion as criterion_a,
        b.criterion as criterion_b,
        a.variant_id as variant_a,
        b.variant_id as variant_b,
        a.layer,
        a.n_kept
    from layer_sizes as a
    inner join layer_sizes as b
        on a.model = b.model
        and a.calibration = b.calibration
        and a.ratio = b.ratio
        and a.layer = b.layer
        and a.criterion < b.criterion
),

shared as (
    select
        a.variant_id as variant_a,
        b.variant_id as variant_b,
        a.layer,
        count(*) as n_shared
    from kept as a
    inner join kept as b
        on a.model = b.model
        and a.calibration = b.calibration
        and a.ratio = b.ratio
        and a.layer = b.layer
        and a.expert = b.expert
        and a.criterion < b.criterion
    group by all
),

pair_overlaps as (
    select
        mask_pairs.model,
        mask_pairs.calibration,
        mask_pairs.ratio,
        mask_pairs.criterion_a,
        mask_pairs.criterion_b,
        mask_pairs.variant_a,
        mask_pairs.variant_b,
        avg(coalesce(shared.n_shared, 0) / mask_pairs.n_kept) as overlap
    from mask_pairs
    left join shared
        on mask_pairs.variant_a = shared.variant_a
        and mask_pairs.variant_b = shared.variant_b
        and mask_pairs.layer = shared.layer
    group by all
),

final as (
    select
        model,
        calibration,
        ratio,
        criterion_a,
        criterion_b,
        count(*) as n_seed_pairs,
        avg(overlap) as overlap
    from pair_overlaps
    group by all
)

select * from final
order by model, calibration, ratio, criterion_a, criterion_b
