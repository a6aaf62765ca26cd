-- table: top_k_monosemanticity
-- Sparsity against monosemanticity (paper 001, Fig. 2a): per MoE layer, LDS = mean EMS over the layer's experts,
-- at the model's own top-k and at each top-k it was re-observed with (monosemanticity.top_k; the top-k changed in
-- every MoE layer), from the store's monosemanticity_scores. Fewer experts per token is sparser routing; the paper
-- finds LDS falls as top-k grows. An expert without an EMS is left out of the mean; n_lds says how many were averaged.
-- column: model: base model name
-- column: explainer: who explained (offline: the stand-in; else the judge name)
-- column: predictor: who predicted
-- column: layer: decoder layer index of the MoE block
-- column: top_k: experts per token of the activation records
-- column: reobserved: top_k is not the model's own
-- column: lds: LDS, mean EMS over the layer's experts
-- column: n_lds: experts with an EMS

with

monosemanticity_scores as (
    select * from monosemanticity_scores
),

-- EMS does not depend on the target domain: one row per expert
experts as (
    select distinct
        model,
        explainer,
        predictor,
        layer,
        top_k,
        reobserved,
        expert,
        ems
    from monosemanticity_scores
    where ems is not null
),

final as (
    select
        model,
        explainer,
        predictor,
        layer,
        top_k,
        reobserved,
        avg(ems) as lds,
        count(*) as n_lds
    from experts
    group by all
    order by model, explainer, predictor, layer, top_k
)

select * from final
