-- table: layer_monosemanticity
-- Per MoE layer (paper 001, eq. 6 and Fig. 2b, 8): LDS = mean EMS over the layer's experts, LDDS^(d) = mean
-- EDMS^(d), from the store's monosemanticity_scores; an expert without a score (never routed in the scope, or no valid
-- prediction) is left out of the mean, and n_* say how many were averaged. Each model's own routing (the top-k
-- re-observations are top_k_monosemanticity's).
-- column: model: base model name
-- column: top_k: the model's own experts per token
-- column: explainer: who explained (offline: the stand-in; else the judge name)
-- column: predictor: who predicted
-- column: domain: target domain d of LDDS
-- column: layer: decoder layer index of the MoE block
-- column: lds: LDS, mean EMS over the layer's experts
-- column: ldds: LDDS^(d), mean EDMS^(d) over the layer's experts
-- column: n_lds: experts with an EMS
-- column: n_ldds: experts with an EDMS^(d)

with

monosemanticity_scores as (
    select * from monosemanticity_scores
),

final as (
    select
        model,
        top_k,
        explainer,
        predictor,
        domain,
        layer,
        avg(ems) as lds,
        avg(edms) as ldds,
        count(ems) as n_lds,
        count(edms) as n_ldds
    from monosemanticity_scores
    where not reobserved
    group by all
    order by model, explainer, predictor, domain, layer
)

select * from final
