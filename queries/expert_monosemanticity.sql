-- table: expert_monosemanticity
-- The second study's per-expert scores: the store's monosemanticity_scores view (schema/expertlab.sql
-- computes them: paper 001, eq. 4, 5, 7 and EDMRS; invalid predictions left out), one row per target domain d, from
-- each model's own routing (the top-k re-observations are top_k_monosemanticity's).
-- column: model: base model name
-- column: top_k: the model's own experts per token
-- column: explainer: who explained (offline: the stand-in; else the judge name)
-- column: predictor: who predicted
-- column: layer: decoder layer index of the MoE block
-- column: expert: routed expert index (0-based)
-- column: domain: target domain d
-- column: ems: EMS, prediction accuracy under the P_mono explanation over scope-all test windows
-- column: edms: EDMS^(d), prediction accuracy under the P_domain^(d) explanation over domain-d test windows
-- column: af: AF^(d), routed tokens of domain d / tokens of domain d
-- column: edmrs: EDMRS^(d) = af x edms
-- column: n_ems: scope-all test windows with a valid prediction
-- column: n_edms: domain-d test windows with a valid prediction

with

monosemanticity_scores as (
    select * from monosemanticity_scores
),

final as (
    select * exclude (reobserved)
    from monosemanticity_scores
    where not reobserved
    order by model, explainer, predictor, domain, layer, expert
)

select * from final
