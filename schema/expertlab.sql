-- The store's schema (results.duckdb): the one definition of every type, table and view.
-- The double-brace placeholders below are filled by expertlab/store/schema.py. A bare name takes its
-- vocabulary from the registries, so a new criterion, task domain or artifact kind changes the enum
-- without an edit here; `columns: <name>` takes the columns of a file a stage writes, each typed once
-- in expertlab/records.py (the writers' parquet schemas come from the same map).
-- Keys are declared, foreign keys are not: DuckDB cannot update or delete a referenced row, and
-- every table is derived by `expertlab ingest`, which keeps them consistent.

create type criterion as enum ({{ criterion }});
create type domain as enum ({{ domain }});
create type aspect as enum ({{ aspect }});
create type task_kind as enum ({{ task_kind }});
create type artifact_kind as enum ({{ artifact_kind }});
create type metric_level as enum ({{ metric_level }});
create type protocol as enum ({{ protocol }});
create type judge_kind as enum ({{ judge_kind }});
create type judgment_question as enum ({{ judgment_question }});
create type judged_output as enum ({{ judged_output }});
create type judgment_label as enum ({{ judgment_label }});
create type judgment_status as enum ({{ judgment_status }});

create table store_schema (
    fingerprint varchar primary key,
    ddl varchar not null
);
comment on table store_schema is 'one row: the fingerprint of the schema and ingest code that built this store; a mismatch makes the next ingest rebuild it from scratch';
comment on column store_schema.fingerprint is 'sha256 of the rendered DDL, the ingest code and the task registry';
comment on column store_schema.ddl is 'the rendered DDL this store was created with';

create table artifacts (
    kind artifact_kind not null,
    identity varchar not null,
    path varchar not null,
    content_hash varchar not null,
    files varchar[] not null,
    meta json not null,
    ingested_at timestamp not null,
    primary key (kind, identity)
);
comment on table artifacts is 'ingest manifest: one row per artifact directory loaded into the store';
comment on column artifacts.kind is 'artifact kind, the `kind` of its meta.json (observation, selection, scores, generations, judgments, activations, expert_samples, explanations, predictions)';
comment on column artifacts.identity is 'what the artifact is about: model:calibration:seed for observations and selections, the variant_id for scores and generations, the judgment set''s name for judgments, the model for the second study''s artifacts';
comment on column artifacts.path is 'artifact directory as given to ingest';
comment on column artifacts.content_hash is 'sha256 over the names and bytes of the files read (see files); an unchanged hash skips the artifact';
comment on column artifacts.files is 'files of the artifact directory that were read and hashed, sorted';
comment on column artifacts.meta is 'the artifact''s meta.json, verbatim';
comment on column artifacts.ingested_at is 'UTC time the artifact was (re)loaded';

create table tasks (
    task varchar primary key,
    domain domain not null,
    aspect aspect not null,
    kind task_kind not null,
    metrics varchar[] not null,
    primary_metric varchar not null,
    max_new_tokens integer not null,
    max_model_len integer not null,
    description varchar not null,
    source varchar not null
);
comment on table tasks is 'evaluation tasks, copied from the registry expertlab.tasks.TASKS at ingest';
comment on column tasks.task is 'task name';
comment on column tasks.domain is 'domain the task probes (biomedical, general, tool_use)';
comment on column tasks.aspect is 'what the task measures: utility (can the model do the task) or reliability (does it stay factual)';
comment on column tasks.kind is 'generation (free text scored against a target) or classification (one of given choices)';
comment on column tasks.metrics is 'metrics computed for every sample, in registry order';
comment on column tasks.primary_metric is 'the metric reported for the task in the study''s tables and figures';
comment on column tasks.max_new_tokens is 'generation budget per sample, in tokens';
comment on column tasks.max_model_len is 'context per sample, in tokens: prompt plus generated tokens (a generations artifact''s meta records the context it was generated in)';
comment on column tasks.description is 'one-line description and the benchmark it mirrors';
comment on column tasks.source is 'where its items come from: a source under params evaluation.sources (local copies of the official files), an installed package''s own files (bfcl-eval), or toy (the toy world)';

create table observations (
    {{ columns: observations }},
    primary key (model, calibration, seed)
);
comment on table observations is 'one calibration pass per (model, calibration, seed): what was observed (the observe stage''s meta.json)';
comment on column observations.model is 'base model name';
comment on column observations.calibration is 'calibration set name';
comment on column observations.seed is 'calibration sampling seed';
comment on column observations.model_type is 'transformers model_type of the base model (e.g. qwen3_moe)';
comment on column observations.num_experts is 'routed experts per MoE layer in the base model';
comment on column observations.top_k is 'experts the base model routes each token to';
comment on column observations.n_group is 'router expert groups (1 unless group-limited routing)';
comment on column observations.moe_layers is 'decoder layer indices that hold an MoE block, ascending';
comment on column observations.samples is 'calibration texts passed through the model';
comment on column observations.tokens is 'non-padding calibration tokens seen by each MoE layer';

create table expert_stats (
    model varchar not null,
    calibration varchar not null,
    seed integer not null,
    {{ columns: expert_stats }},
    primary key (model, calibration, seed, layer, expert)
);
comment on table expert_stats is 'sufficient statistics per (layer, expert) from one calibration pass; every criterion is computed from them (DESIGN.md, Saliency criteria)';
comment on column expert_stats.model is 'base model name';
comment on column expert_stats.calibration is 'calibration set name';
comment on column expert_stats.seed is 'calibration sampling seed';
comment on column expert_stats.layer is 'decoder layer index of the MoE block';
comment on column expert_stats.expert is 'routed expert index in the base model (0-based)';
comment on column expert_stats.tokens is 'non-padding tokens seen by the layer';
comment on column expert_stats.routed_count is 'tokens routed to the expert: sum_t 1[g > 0] (the frequency criterion)';
comment on column expert_stats.gate_sum is 'sum_t g, the combine weight after the model''s own top-k and normalisation (the gate criterion)';
comment on column expert_stats.ean_sum is 'sum_t 1[g > 0] ||E(h_t)||_2 (the ean criterion)';
comment on column expert_stats.weighted_norm_sum is 'sum_t g ||E(h_t)||_2 (reap = weighted_norm_sum / routed_count)';
comment on column expert_stats.easy_ep_sum is 'sum_t g ||E(h_t)||_2 (1 - cos(h_t, h~_t)) (the easy_ep criterion)';

create table expert_scores (
    model varchar not null,
    calibration varchar not null,
    seed integer not null,
    {{ columns: expert_scores }},
    rank integer not null,
    primary key (model, calibration, seed, criterion, layer, expert)
);
comment on table expert_scores is 'saliency score of every expert under every criterion, from one observation';
comment on column expert_scores.model is 'base model name';
comment on column expert_scores.calibration is 'calibration set name';
comment on column expert_scores.seed is 'calibration sampling seed (also seeds the random criterion)';
comment on column expert_scores.criterion is 'saliency criterion';
comment on column expert_scores.layer is 'decoder layer index of the MoE block';
comment on column expert_scores.expert is 'routed expert index in the base model (0-based)';
comment on column expert_scores.score is 'saliency score; higher means more important';
comment on column expert_scores.rank is 'rank within the layer, 1 = most salient; ties go to the lower expert index, so a mask keeping M experts keeps ranks 1..M';

create table part_scores (
    model varchar not null,
    calibration varchar not null,
    seed integer not null,
    {{ columns: part_scores }},
    primary key (model, calibration, seed, part, criterion, layer, expert)
);
comment on table part_scores is 'a combined calibration''s parts: each part''s own saliency scores, whose mean over the parts is the calibration''s score in expert_scores (paper §6, after EASY-EP)';
comment on column part_scores.model is 'base model name';
comment on column part_scores.calibration is 'the combined calibration (combined_calibrations in params)';
comment on column part_scores.seed is 'calibration sampling seed, the same for every part';
comment on column part_scores.part is 'the calibration set this score was observed on';
comment on column part_scores.criterion is 'saliency criterion';
comment on column part_scores.layer is 'decoder layer index of the MoE block';
comment on column part_scores.expert is 'routed expert index in the base model (0-based)';
comment on column part_scores.score is 'the part''s saliency score; higher means more important';

create table variants (
    variant_id varchar primary key,
    is_source boolean not null,
    model varchar not null,
    calibration varchar,
    seed integer,
    criterion criterion,
    ratio double,
    kept_per_layer integer,
    top_k integer,
    origin varchar not null,
    quantization varchar,
    finetune varchar,
    finetune_seed integer
);
comment on table variants is 'models as evaluated: each source (unpruned) model and every pruned variant named by a selection, score, generation or judgments artifact';
comment on column variants.variant_id is 'model:source, model:calibration:seed:criterion:ratio with the ratio as Python writes a float, or either followed by :scheme for a quantized variant or :ft-strategy-seed for a fine-tuned one';
comment on column variants.is_source is 'true for the source model itself (neither pruned nor fine-tuned)';
comment on column variants.model is 'base model name';
comment on column variants.calibration is 'calibration set the experts were selected on; null for the source';
comment on column variants.seed is 'calibration seed; null for the source';
comment on column variants.criterion is 'saliency criterion that chose the kept experts; null for the source';
comment on column variants.ratio is 'fraction of routed experts removed per MoE layer; null for the source';
comment on column variants.kept_per_layer is 'routed experts kept per MoE layer, round((1 - ratio) * num_experts); null for the source';
comment on column variants.top_k is 'experts each token is routed to (lower than the source''s only when top-k reduction was allowed); null when no artifact recorded it';
comment on column variants.origin is 'who chose the kept experts: expertlab (the select stage; also the source models) or imported (`expertlab import-masks` or `import-judgments`, e.g. the study''s released masks and the variants its released verdicts judge)';
comment on column variants.quantization is 'the quantization scheme (a name under `quantization` in params) applied to the pruned checkpoint; null for unquantized variants and the source';
comment on column variants.finetune is 'the fine-tuning strategy (full, af, edmrs, lora; the second study) applied to the variant of the other fields; null when not fine-tuned';
comment on column variants.finetune_seed is 'the fine-tuning seed (example order, LoRA init); null when not fine-tuned';

create table expert_masks (
    variant_id varchar not null,
    layer integer not null,
    expert integer not null,
    kept boolean not null,
    primary key (variant_id, layer, expert)
);
comment on table expert_masks is 'which experts a pruned variant keeps: one row per (variant, MoE layer, base-model expert), kept or not, so overlaps are joins and counts';
comment on column expert_masks.variant_id is 'pruned variant (see variants)';
comment on column expert_masks.layer is 'decoder layer index of the MoE block';
comment on column expert_masks.expert is 'routed expert index in the base model (0-based); the pruned checkpoint renumbers kept experts 0..M-1 in this order';
comment on column expert_masks.kept is 'true when the variant keeps the expert';

create table sample_scores (
    variant_id varchar not null,
    {{ columns: sample_scores }},
    primary key (variant_id, task, sample_id, metric)
);
comment on table sample_scores is 'every metric of every evaluated sample, long format';
comment on column sample_scores.variant_id is 'evaluated variant (see variants)';
comment on column sample_scores.task is 'evaluation task (see tasks)';
comment on column sample_scores.sample_id is 'task item id';
comment on column sample_scores.metric is 'metric name (expertlab.metrics.METRICS; per-sample metrics only)';
comment on column sample_scores.value is 'metric value for the sample';

create table task_scores (
    variant_id varchar not null,
    task varchar not null,
    metric varchar not null,
    value double not null,
    n bigint not null,
    level metric_level not null,
    primary key (variant_id, task, metric)
);
comment on table task_scores is 'one value per (variant, task, metric): the mean of sample_scores, or a corpus-level metric (e.g. a macro F1 over labels); recomputed at ingest for every artifact whose scores changed';
comment on column task_scores.variant_id is 'evaluated variant (see variants)';
comment on column task_scores.task is 'evaluation task (see tasks)';
comment on column task_scores.metric is 'metric name';
comment on column task_scores.value is 'the metric on the task: the mean over its samples (level sample) or its corpus-level value (level corpus)';
comment on column task_scores.n is 'samples averaged, or samples the corpus metric was computed over';
comment on column task_scores.level is 'sample: averaged from sample_scores; corpus: computed once over all of the task''s samples';

create table generations (
    variant_id varchar not null,
    {{ columns: generations }},
    primary key (variant_id, task, sample_id)
);
comment on table generations is 'model outputs: one row per (variant, task item)';
comment on column generations.variant_id is 'generating variant (see variants)';
comment on column generations.task is 'evaluation task (see tasks)';
comment on column generations.sample_id is 'task item id';
comment on column generations.prompt is 'user turn given to the model (before the chat template)';
comment on column generations.output is 'decoded model output';
comment on column generations.target is 'reference answer or summary';
comment on column generations.choices is 'answer options for classification tasks; null for generation tasks';

create table judgments (
    judgment_set varchar not null,
    {{ columns: judgments }},
    primary key (judge, protocol, question, task, sample_id, variant_id, output)
);
comment on table judgments is 'verdicts of judges and annotators, long format: one row per (judge, protocol, question, judged item); written by the judge stage (judgments/), or imported by `expertlab import-judgments` (the study''s released verdicts, human annotations); the judged variant''s model, criterion and ratio are in variants (the verdicts view joins them)';
comment on column judgments.judgment_set is 'the judgments artifact the row came from (its meta.json name: <variant_id>/<task group> for the judge stage, e.g. study-absolute-evaluation_samples_30 for an import)';
comment on column judgments.judge is 'who gave the verdict: a judge (its name under params judges, e.g. grounding or claude-haiku-4.5) or a human annotator';
comment on column judgments.judge_kind is 'llm (an automatic judge: an LLM, or the deterministic grounding judge) or human (an annotator)';
comment on column judgments.protocol is 'absolute (is one output faithful to its source) or relative (which of the pruned and source summaries does more of something)';
comment on column judgments.question is 'what was asked: hallucinated (absolute); q1_hallucinations_more, q2_omission_more, q3_repetition_more, q4_alignment_more (relative)';
comment on column judgments.task is 'task of the judged item (see tasks); an import names the task that mirrors the release''s dataset (RCT: rct_summary, Multi-X-Science: multixscience_summary)';
comment on column judgments.sample_id is 'the judged sample: its task item id (the judge stage), or the document id as an import gives it (the release: e.g. rct:CD001900); one sample may be judged for several variants';
comment on column judgments.variant_id is 'the judged (pruned) variant (see variants, which every judgments artifact fills with its variants: imported ones with origin imported, the release''s <model>-<calibration>-<criterion>-<seed>[-<ratio>] read as a variant)';
comment on column judgments.output is 'what was judged: the pruned or the source model''s output (absolute), or the pair (relative)';
comment on column judgments.label is 'the verdict: hallucinated or faithful (absolute), pruned or source: the summary the judge names (relative); null unless status is ok';
comment on column judgments.status is 'ok (a label), missing (no verdict given, e.g. a null judge entry) or invalid (a verdict that could not be read as a label; see raw)';
comment on column judgments.raw is 'the verdict as given. Judge stage: absolute {verdicts, score, threshold} (grounding: {reasons}), relative {order: {A, B}, answers}, invalid {answer, error}. Release: absolute {score, success, reason}, relative {mapping, raw_answers, resolved_answers}, JSON null when missing. Human CSV: the row as given';

-- The source model's value of every task and metric: the baseline each comparison with the source reads.
-- the second study (paper 001): activation records and the windows sampled from them
create table activation_runs (
    {{ columns: activation_runs }},
    primary key (model, top_k)
);
comment on table activation_runs is 'one record-activations pass per model and monosemanticity.top_k entry over the monosemanticity corpus (its meta.json)';
comment on column activation_runs.model is 'base model name';
comment on column activation_runs.seed is 'seed of the corpus calibration sets';
comment on column activation_runs.window_tokens is 'tokens per window (the last window of a text may be shorter)';
comment on column activation_runs.model_type is 'transformers model_type of the model';
comment on column activation_runs.num_experts is 'routed experts per MoE layer';
comment on column activation_runs.top_k is 'experts each token was routed to in the pass';
comment on column activation_runs.native_top_k is 'the model''s own top-k: the pass re-observed it with top-k changed in every MoE layer when top_k differs';
comment on column activation_runs.moe_layers is 'decoder layer indices that hold an MoE block, ascending';
comment on column activation_runs.documents is 'corpus texts read';
comment on column activation_runs.windows is 'windows cut from them';

create table activation_windows (
    model varchar not null,
    top_k integer not null,
    {{ columns: activation_windows }},
    primary key (model, top_k, window_id)
);
comment on table activation_windows is 'every window of the corpus: consecutive pieces of a text, every token in exactly one';
comment on column activation_windows.model is 'base model name (its tokenizer cut the windows)';
comment on column activation_windows.top_k is 'activation_runs.top_k of the pass that read them';
comment on column activation_windows.window_id is 'window id, in corpus order';
comment on column activation_windows.domain is 'the corpus domain of its text (monosemanticity.corpus key)';
comment on column activation_windows.document is 'its text, 0-based in corpus order';
comment on column activation_windows.start is 'its first token''s position in the text';
comment on column activation_windows.tokens is 'its tokens';
comment on column activation_windows.token_texts is 'each token decoded on its own';

create table activations (
    model varchar not null,
    top_k integer not null,
    {{ columns: activations }},
    primary key (model, top_k, layer, expert, window_id)
);
comment on table activations is 'routed entries only: per (layer, expert, window_id) where the router selected the expert on some token (g > 0); AF_i^(d) = sum(routed_tokens) / tokens of domain d';
comment on column activations.model is 'base model name';
comment on column activations.top_k is 'activation_runs.top_k: experts per token in the pass';
comment on column activations.layer is 'decoder layer index of the MoE block';
comment on column activations.expert is 'routed expert index (0-based)';
comment on column activations.window_id is 'activation_windows.window_id';
comment on column activations.routed_tokens is 'tokens of the window routed to the expert';
comment on column activations.max_weight is 'its strongest combine weight in the window (the window''s activation)';
comment on column activations.positions is 'routed token positions within the window (0-based, ascending)';

create table expert_samples (
    model varchar not null,
    top_k integer not null,
    {{ columns: expert_samples }},
    primary key (model, top_k, scope, layer, expert, role, window_id)
);
comment on table expert_samples is 'per expert and scope, the windows its explainer sees (role explain) and its predictor is tested on (role test)';
comment on column expert_samples.model is 'base model name';
comment on column expert_samples.top_k is 'activation_runs.top_k of the records sampled';
comment on column expert_samples.scope is 'all (every domain: P_mono, EMS) or a target domain d (its windows: P_domain^(d), EDMS^(d))';
comment on column expert_samples.layer is 'decoder layer index of the MoE block';
comment on column expert_samples.expert is 'routed expert index (0-based)';
comment on column expert_samples.role is 'explain (the strongest positives) or test (other positives and negatives)';
comment on column expert_samples.window_id is 'activation_windows.window_id';
comment on column expert_samples.routed is 'the expert is routed on some token of the window (the label a prediction is scored against)';
comment on column expert_samples.activation is 'activations.max_weight; 0 for a negative';
comment on column expert_samples.rank is 'explain: 1 = strongest; test: the window''s number in the predictor''s seeded random order';

create table sample_counts (
    model varchar not null,
    top_k integer not null,
    {{ columns: sample_counts }},
    primary key (model, top_k, scope, layer, expert)
);
comment on table sample_counts is 'per expert and scope, how many windows there were and were drawn; shortfall says what fell short of the params';
comment on column sample_counts.model is 'base model name';
comment on column sample_counts.top_k is 'activation_runs.top_k of the records sampled';
comment on column sample_counts.scope is 'all or a target domain';
comment on column sample_counts.layer is 'decoder layer index of the MoE block';
comment on column sample_counts.expert is 'routed expert index (0-based)';
comment on column sample_counts.routed_windows is 'windows of the scope on which the expert is routed';
comment on column sample_counts.unrouted_windows is 'windows of the scope on which it is not';
comment on column sample_counts.explain is 'explanation windows drawn';
comment on column sample_counts.test_positives is 'positive test windows drawn';
comment on column sample_counts.test_negatives is 'negative test windows drawn';
comment on column sample_counts.shortfall is 'what fell short of monosemanticity.sampling (null: nothing)';

create table explanations (
    model varchar not null,
    top_k integer not null,
    explainer varchar not null,
    {{ columns: explanations }},
    primary key (model, top_k, explainer, scope, layer, expert)
);
comment on table explanations is 'what an explainer said each expert specializes in, per scope (P_mono for all, P_domain^(d) for a target domain)';
comment on column explanations.model is 'base model name';
comment on column explanations.top_k is 'activation_runs.top_k of the records explained';
comment on column explanations.explainer is 'offline (the stand-in) or the judge name of the LLM that explained';
comment on column explanations.scope is 'all or a target domain';
comment on column explanations.layer is 'decoder layer index of the MoE block';
comment on column explanations.expert is 'routed expert index (0-based)';
comment on column explanations.explanation is 'the specialization, without "This expert specializes in" (null unless status ok)';
comment on column explanations.status is 'ok, or invalid (no answer named a specialization)';
comment on column explanations.raw is 'the answer as given';

create table predictions (
    model varchar not null,
    top_k integer not null,
    explainer varchar not null,
    predictor varchar not null,
    {{ columns: predictions }},
    primary key (model, top_k, explainer, predictor, scope, layer, expert, window_id)
);
comment on table predictions is 'per test window of each explained expert: whether the predictor, reading the explanation, said the expert is routed there';
comment on column predictions.model is 'base model name';
comment on column predictions.top_k is 'activation_runs.top_k of the records predicted on';
comment on column predictions.explainer is 'whose explanations the predictor read';
comment on column predictions.predictor is 'offline (the stand-in) or the judge name of the LLM that predicted';
comment on column predictions.scope is 'all or a target domain';
comment on column predictions.layer is 'decoder layer index of the MoE block';
comment on column predictions.expert is 'routed expert index (0-based)';
comment on column predictions.window_id is 'activation_windows.window_id (expert_samples.routed is its label)';
comment on column predictions.part is 'which of the expert''s predictor prompts showed the window';
comment on column predictions.predicted is 'the answer named the window (null when the answer was invalid)';
comment on column predictions.status is 'ok, or invalid (the answer was not None nor example numbers)';

create table expert_selection_runs (
    {{ columns: expert_selection_runs }},
    primary key (model)
);
comment on table expert_selection_runs is 'per fine-tuned model: which target domain, layers and number of experts the af and edmrs strategies train, from whose monosemanticity scores';
comment on column expert_selection_runs.model is 'base model name';
comment on column expert_selection_runs.explainer is 'whose explanations gave EDMS';
comment on column expert_selection_runs.predictor is 'whose predictions gave EDMS';
comment on column expert_selection_runs.domain is 'target domain d of AF^(d) and EDMRS^(d)';
comment on column expert_selection_runs.layers is 'all (every MoE layer) or best_lds (the layer of highest LDS)';
comment on column expert_selection_runs.experts_per_layer is 'm, experts trained per chosen layer';
comment on column expert_selection_runs.chosen_layers is 'decoder layer indices whose experts train';
comment on column expert_selection_runs.short is '(strategy, layer) pairs with fewer than m scored experts';

create table expert_selections (
    model varchar not null,
    {{ columns: expert_selections }},
    primary key (model, strategy, layer, rank)
);
comment on table expert_selections is 'per selective fine-tuning strategy (af, edmrs, lora_edmrs, or one at a given layer such as edmrs_l2) and layer it trains: its experts, best first (ties to the lower index)';
comment on column expert_selections.model is 'base model name';
comment on column expert_selections.strategy is 'the fine-tuning strategy (finetune.strategies) that trains these experts';
comment on column expert_selections.layer is 'decoder layer index of the MoE block';
comment on column expert_selections.rank is '1 for the highest score';
comment on column expert_selections.expert is 'routed expert index (0-based)';
comment on column expert_selections.score is 'the AF^(d) or EDMRS^(d) the strategy ranks by';

create view source_task_scores as
with

task_scores as (
    select * from task_scores
),

variants as (
    select * from variants
),

final as (
    select
        variants.model,
        task_scores.task,
        task_scores.metric,
        task_scores.value
    from task_scores
    inner join variants
        on task_scores.variant_id = variants.variant_id
    where variants.is_source
)

select * from final;
comment on view source_task_scores is 'each source (unpruned) model''s value per task and metric: what pruned variants are compared with';
comment on column source_task_scores.model is 'base model name (the source model)';
comment on column source_task_scores.task is 'evaluation task';
comment on column source_task_scores.metric is 'metric name';
comment on column source_task_scores.value is 'the source model''s task_scores.value';

-- The study's unit of comparison: a variant's primary-metric score next to its source model's.
create view primary_scores as
with

task_scores as (
    select * from task_scores
),

tasks as (
    select * from tasks
),

variants as (
    select * from variants
),

source_task_scores as (
    select * from source_task_scores
),

primary_task_scores as (
    select
        task_scores.variant_id,
        task_scores.task,
        task_scores.metric,
        task_scores.value as score
    from task_scores
    inner join tasks
        on task_scores.task = tasks.task
        and task_scores.metric = tasks.primary_metric
),

final as (
    select
        variants.variant_id,
        variants.model,
        variants.calibration,
        variants.seed,
        variants.criterion,
        variants.ratio,
        variants.quantization,
        variants.finetune,
        variants.finetune_seed,
        tasks.task,
        tasks.domain,
        tasks.aspect,
        tasks.kind,
        primary_task_scores.metric,
        primary_task_scores.score,
        source_task_scores.value as source_score,
        -- undefined (null) where the source scores 0
        primary_task_scores.score / nullif(source_task_scores.value, 0) as retention
    from primary_task_scores
    inner join variants
        on primary_task_scores.variant_id = variants.variant_id
    inner join tasks
        on primary_task_scores.task = tasks.task
    left join source_task_scores
        on variants.model = source_task_scores.model
        and primary_task_scores.task = source_task_scores.task
        and primary_task_scores.metric = source_task_scores.metric
    where not variants.is_source
)

select * from final;
comment on view primary_scores is 'each variant''s (pruned, quantized or fine-tuned) primary-metric score per task beside its source model''s score (the input of every retention table)';
comment on column primary_scores.variant_id is 'the variant (see variants), never the source itself';
comment on column primary_scores.model is 'base model name';
comment on column primary_scores.calibration is 'calibration set name';
comment on column primary_scores.seed is 'calibration seed';
comment on column primary_scores.criterion is 'saliency criterion';
comment on column primary_scores.ratio is 'fraction of routed experts removed per MoE layer';
comment on column primary_scores.quantization is 'quantization scheme of the variant; null when unquantized (tables over the pruning grid keep only those)';
comment on column primary_scores.finetune is 'fine-tuning strategy of the variant; null when not fine-tuned (tables over the pruning grid keep only those)';
comment on column primary_scores.finetune_seed is 'fine-tuning seed; null when not fine-tuned';
comment on column primary_scores.task is 'evaluation task';
comment on column primary_scores.domain is 'task domain';
comment on column primary_scores.aspect is 'task aspect (utility, reliability)';
comment on column primary_scores.kind is 'task kind (generation, classification)';
comment on column primary_scores.metric is 'the task''s primary metric';
comment on column primary_scores.score is 'the variant''s primary metric on the task (task_scores.value)';
comment on column primary_scores.source_score is 'the source model''s primary metric on the task; null when the source was not scored';
comment on column primary_scores.retention is 'score / source_score; null when the source score is missing or 0';

-- Utility a variant keeps per domain: the study's headline quantity (DESIGN.md, toy-world findings).
create view domain_retention as
with

primary_scores as (
    select * from primary_scores
),

utility as (
    select *
    from primary_scores
    -- a task the source scores 0 on has no retention
    where aspect = 'utility'
        and retention is not null
),

final as (
    select
        variant_id,
        model,
        calibration,
        seed,
        criterion,
        ratio,
        quantization,
        domain,
        avg(retention) as retention,
        count(*) as n_tasks
    from utility
    group by
        variant_id,
        model,
        calibration,
        seed,
        criterion,
        ratio,
        quantization,
        domain
)

select * from final;
comment on view domain_retention is 'each pruned variant''s utility retention per domain: the mean over the domain''s utility tasks of score / source score';
comment on column domain_retention.variant_id is 'pruned variant (see variants)';
comment on column domain_retention.model is 'base model name';
comment on column domain_retention.calibration is 'calibration set name';
comment on column domain_retention.seed is 'calibration seed';
comment on column domain_retention.criterion is 'saliency criterion';
comment on column domain_retention.ratio is 'fraction of routed experts removed per MoE layer';
comment on column domain_retention.quantization is 'quantization scheme of the variant; null when unquantized';
comment on column domain_retention.domain is 'task domain';
comment on column domain_retention.retention is 'mean over the domain''s utility tasks of variant score / source score; 1 = source level';
comment on column domain_retention.n_tasks is 'utility tasks averaged (those the source scores above 0)';

-- Every verdict with its variant's identity, and whether a rate counts it.
create view verdicts as
with

judgments as (
    select * from judgments
),

variants as (
    select * from variants
),

final as (
    select
        judgments.*,
        variants.model,
        variants.calibration,
        variants.seed,
        variants.criterion,
        variants.ratio,
        variants.quantization,
        case when judgments.status = 'ok' then judgments.label in ('hallucinated', 'pruned') end as counted
    from judgments
    -- every judgments artifact lists its variants, so each verdict finds its own
    left join variants
        on judgments.variant_id = variants.variant_id
)

select * from final;
comment on view verdicts is 'every row of judgments, with the judged variant''s model, calibration, seed, criterion, ratio and quantization and whether the judged rates count it; the rates of judge_rates, judge_trend, summary_collapse, calibration_comparison and reliability_frontier are means of `counted`';
comment on column verdicts.judgment_set is 'judgments.judgment_set';
comment on column verdicts.judge is 'judgments.judge';
comment on column verdicts.judge_kind is 'judgments.judge_kind';
comment on column verdicts.protocol is 'judgments.protocol';
comment on column verdicts.question is 'judgments.question';
comment on column verdicts.task is 'judgments.task';
comment on column verdicts.sample_id is 'judgments.sample_id';
comment on column verdicts.variant_id is 'judgments.variant_id';
comment on column verdicts.output is 'judgments.output';
comment on column verdicts.label is 'judgments.label';
comment on column verdicts.status is 'judgments.status';
comment on column verdicts.raw is 'judgments.raw';
comment on column verdicts.model is 'base model of the judged variant';
comment on column verdicts.calibration is 'calibration set of the judged variant';
comment on column verdicts.seed is 'calibration seed of the judged variant';
comment on column verdicts.criterion is 'saliency criterion of the judged variant';
comment on column verdicts.ratio is 'fraction of routed experts the judged variant removed per MoE layer';
comment on column verdicts.quantization is 'quantization scheme of the judged variant; null when unquantized';
comment on column verdicts.counted is 'status ok: true when the verdict is hallucinated (absolute) or names the pruned summary (relative), false otherwise; null when missing or invalid';

-- Each variant's comparable measures, one row per (variant, measure): the rows of the study's Table 2.
create view variant_measures as
with

primary_scores as (
    select * from primary_scores
),

verdicts as (
    select * from verdicts
),

utility as (
    select
        variant_id,
        model,
        calibration,
        seed,
        criterion,
        ratio,
        quantization,
        'utility:' || domain || ':' || kind as measure,
        avg(score) as value
    from primary_scores
    where aspect = 'utility'
    group by all
),

judged as (
    select
        variant_id,
        model,
        calibration,
        seed,
        criterion,
        ratio,
        quantization,
        'judged:' || task || ':' || question as measure,
        avg(counted::double) as value
    from verdicts
    where status = 'ok'
        and output in ('pruned', 'pair')
    group by all
),

final as (
    select
        *,
        -- higher is better for utility and alignment, lower for the other judged rates
        measure like 'utility:%' or measure like '%:q4_alignment_more' as higher_is_better
    from (
        select * from utility
        union all
        select * from judged
    )
)

select * from final;
comment on view variant_measures is 'each pruned variant''s utility per domain and task kind (mean primary score) and judged rate per task and question (pooled over judges): what calibration_comparison and quantization_comparison compare';
comment on column variant_measures.variant_id is 'pruned variant (see variants)';
comment on column variant_measures.model is 'base model name';
comment on column variant_measures.calibration is 'calibration set name';
comment on column variant_measures.seed is 'calibration seed';
comment on column variant_measures.criterion is 'saliency criterion';
comment on column variant_measures.ratio is 'fraction of routed experts removed per MoE layer';
comment on column variant_measures.quantization is 'quantization scheme; null when unquantized';
comment on column variant_measures.measure is 'utility:<domain>:<kind> (mean primary score of the utility tasks), or judged:<task>:<question> (share of the variant''s verdicts counted, see verdicts)';
comment on column variant_measures.value is 'the measure''s value for the variant';
comment on column variant_measures.higher_is_better is 'true for utility and relative alignment, false for the other judged rates';

-- The pruning grid: every table over model x calibration x criterion x ratio x seed reads these views.
-- A quantized variant is not one more seed of its criterion and ratio, so the grid leaves it out
-- (quantization_comparison compares it); quantization, null throughout the grid, is dropped.
create view grid_variants as
select * exclude (quantization, finetune, finetune_seed)
from variants
where quantization is null
    and finetune is null;
comment on view grid_variants is 'the source models and every unquantized pruned variant (variants neither quantized nor fine-tuned)';
comment on column grid_variants.variant_id is 'variants.variant_id';
comment on column grid_variants.is_source is 'variants.is_source';
comment on column grid_variants.model is 'variants.model';
comment on column grid_variants.calibration is 'variants.calibration';
comment on column grid_variants.seed is 'variants.seed';
comment on column grid_variants.criterion is 'variants.criterion';
comment on column grid_variants.ratio is 'variants.ratio';
comment on column grid_variants.kept_per_layer is 'variants.kept_per_layer';
comment on column grid_variants.top_k is 'variants.top_k';
comment on column grid_variants.origin is 'variants.origin';

create view grid_primary_scores as
select * exclude (quantization, finetune, finetune_seed)
from primary_scores
where quantization is null
    and finetune is null;
comment on view grid_primary_scores is 'primary_scores of the pruning grid: variants neither quantized nor fine-tuned';
comment on column grid_primary_scores.variant_id is 'primary_scores.variant_id';
comment on column grid_primary_scores.model is 'primary_scores.model';
comment on column grid_primary_scores.calibration is 'primary_scores.calibration';
comment on column grid_primary_scores.seed is 'primary_scores.seed';
comment on column grid_primary_scores.criterion is 'primary_scores.criterion';
comment on column grid_primary_scores.ratio is 'primary_scores.ratio';
comment on column grid_primary_scores.task is 'primary_scores.task';
comment on column grid_primary_scores.domain is 'primary_scores.domain';
comment on column grid_primary_scores.aspect is 'primary_scores.aspect';
comment on column grid_primary_scores.kind is 'primary_scores.kind';
comment on column grid_primary_scores.metric is 'primary_scores.metric';
comment on column grid_primary_scores.score is 'primary_scores.score';
comment on column grid_primary_scores.source_score is 'primary_scores.source_score';
comment on column grid_primary_scores.retention is 'primary_scores.retention';

create view grid_domain_retention as
select * exclude (quantization)
from domain_retention
where quantization is null
    and variant_id not in (select variant_id from variants where finetune is not null);
comment on view grid_domain_retention is 'domain_retention of the pruning grid: variants neither quantized nor fine-tuned';
comment on column grid_domain_retention.variant_id is 'domain_retention.variant_id';
comment on column grid_domain_retention.model is 'domain_retention.model';
comment on column grid_domain_retention.calibration is 'domain_retention.calibration';
comment on column grid_domain_retention.seed is 'domain_retention.seed';
comment on column grid_domain_retention.criterion is 'domain_retention.criterion';
comment on column grid_domain_retention.ratio is 'domain_retention.ratio';
comment on column grid_domain_retention.domain is 'domain_retention.domain';
comment on column grid_domain_retention.retention is 'domain_retention.retention';
comment on column grid_domain_retention.n_tasks is 'domain_retention.n_tasks';

create view grid_verdicts as
select * exclude (quantization)
from verdicts
where quantization is null
    and variant_id not in (select variant_id from variants where finetune is not null);
comment on view grid_verdicts is 'verdicts on the pruning grid: variants neither quantized nor fine-tuned';
comment on column grid_verdicts.judgment_set is 'verdicts.judgment_set';
comment on column grid_verdicts.judge is 'verdicts.judge';
comment on column grid_verdicts.judge_kind is 'verdicts.judge_kind';
comment on column grid_verdicts.protocol is 'verdicts.protocol';
comment on column grid_verdicts.question is 'verdicts.question';
comment on column grid_verdicts.task is 'verdicts.task';
comment on column grid_verdicts.sample_id is 'verdicts.sample_id';
comment on column grid_verdicts.variant_id is 'verdicts.variant_id';
comment on column grid_verdicts.output is 'verdicts.output';
comment on column grid_verdicts.label is 'verdicts.label';
comment on column grid_verdicts.status is 'verdicts.status';
comment on column grid_verdicts.raw is 'verdicts.raw';
comment on column grid_verdicts.model is 'verdicts.model';
comment on column grid_verdicts.calibration is 'verdicts.calibration';
comment on column grid_verdicts.seed is 'verdicts.seed';
comment on column grid_verdicts.criterion is 'verdicts.criterion';
comment on column grid_verdicts.ratio is 'verdicts.ratio';
comment on column grid_verdicts.counted is 'verdicts.counted';

create view grid_variant_measures as
select * exclude (quantization)
from variant_measures
where quantization is null
    and variant_id not in (select variant_id from variants where finetune is not null);
comment on view grid_variant_measures is 'variant_measures of the pruning grid: variants neither quantized nor fine-tuned';
comment on column grid_variant_measures.variant_id is 'variant_measures.variant_id';
comment on column grid_variant_measures.model is 'variant_measures.model';
comment on column grid_variant_measures.calibration is 'variant_measures.calibration';
comment on column grid_variant_measures.seed is 'variant_measures.seed';
comment on column grid_variant_measures.criterion is 'variant_measures.criterion';
comment on column grid_variant_measures.ratio is 'variant_measures.ratio';
comment on column grid_variant_measures.measure is 'variant_measures.measure';
comment on column grid_variant_measures.value is 'variant_measures.value';
comment on column grid_variant_measures.higher_is_better is 'variant_measures.higher_is_better';

-- The second study's fine-tuned variants, filtered once here (as the grid_ views filter the pruning grid), with their
-- source model's scores as strategy `source`, and whether each task is in the fine-tuning target domain.
create view finetune_utility as
with

primary_scores as (
    select * from primary_scores
),

expert_selection_runs as (
    select * from expert_selection_runs
),

tuned as (
    select
        model,
        finetune as strategy,
        finetune_seed,
        task,
        domain::varchar as domain,
        score,
        source_score
    from primary_scores
    where finetune is not null
        and aspect = 'utility'
),

-- the source's score once per task, beside every fine-tuned variant of it
before as (
    select distinct
        model,
        'source' as strategy,
        null::integer as finetune_seed,
        task,
        domain,
        source_score as score
    from tuned
    where source_score is not null
),

runs as (
    select * exclude (source_score) from tuned
    union all
    select * from before
),

final as (
    select
        runs.model,
        runs.strategy,
        runs.finetune_seed,
        runs.task,
        runs.domain,
        runs.domain = expert_selection_runs.domain as in_domain,
        runs.score
    from runs
    left join expert_selection_runs
        on runs.model = expert_selection_runs.model
)

select * from final;
comment on view finetune_utility is 'the second study: each fine-tuned variant''s primary score per utility task, and its source model''s once as strategy source (the fine-tuning tables read this)';
comment on column finetune_utility.model is 'base model name';
comment on column finetune_utility.strategy is 'fine-tuning strategy (finetune.strategies), or source (not fine-tuned)';
comment on column finetune_utility.finetune_seed is 'fine-tuning seed; null for the source';
comment on column finetune_utility.task is 'utility task';
comment on column finetune_utility.domain is 'the task''s domain';
comment on column finetune_utility.in_domain is 'the task''s domain is the fine-tuning target domain (expert_selection_runs.domain); null without a selection run';
comment on column finetune_utility.score is 'primary score';

-- The second study's per-expert scores (paper 001, eq. 4, 5, 7 and EDMRS), one row per target domain d.
create view monosemanticity_scores as
with

predictions as (
    select * from predictions
),

expert_samples as (
    select * from expert_samples
),

activations as (
    select * from activations
),

activation_windows as (
    select * from activation_windows
),

activation_runs as (
    select * from activation_runs
),

judged as (
    select
        predictions.model,
        predictions.top_k,
        predictions.explainer,
        predictions.predictor,
        predictions.scope,
        predictions.layer,
        predictions.expert,
        (predictions.predicted = expert_samples.routed)::integer as correct
    from predictions
    inner join expert_samples
        on predictions.model = expert_samples.model
        and predictions.top_k = expert_samples.top_k
        and predictions.scope = expert_samples.scope
        and predictions.layer = expert_samples.layer
        and predictions.expert = expert_samples.expert
        and predictions.window_id = expert_samples.window_id
        and expert_samples.role = 'test'
    where predictions.predicted is not null
),

accuracy as (
    select
        model,
        top_k,
        explainer,
        predictor,
        scope,
        layer,
        expert,
        avg(correct) as accuracy,
        count(*) as n
    from judged
    group by all
),

domain_tokens as (
    select
        model,
        top_k,
        domain,
        sum(tokens) as tokens
    from activation_windows
    group by all
),

routed as (
    select
        activations.model,
        activations.top_k,
        activation_windows.domain,
        activations.layer,
        activations.expert,
        sum(activations.routed_tokens) as routed_tokens
    from activations
    inner join activation_windows
        on activations.model = activation_windows.model
        and activations.top_k = activation_windows.top_k
        and activations.window_id = activation_windows.window_id
    group by all
),

asked as (
    select distinct
        model,
        top_k,
        explainer,
        predictor,
        scope as domain
    from accuracy
    where scope <> 'all'
),

-- per target domain d, every expert with an EMS, with a domain-d accuracy, or routed in domain d (AF^(d) > 0)
targets as (
    select
        asked.model,
        asked.top_k,
        asked.explainer,
        asked.predictor,
        accuracy.layer,
        accuracy.expert,
        asked.domain
    from asked
    inner join accuracy
        on asked.model = accuracy.model
        and asked.top_k = accuracy.top_k
        and asked.explainer = accuracy.explainer
        and asked.predictor = accuracy.predictor
        and accuracy.scope in ('all', asked.domain)
    union
    select
        asked.model,
        asked.top_k,
        asked.explainer,
        asked.predictor,
        routed.layer,
        routed.expert,
        routed.domain
    from asked
    inner join routed
        on asked.model = routed.model
        and asked.top_k = routed.top_k
        and asked.domain = routed.domain
),

final as (
    select
        targets.model,
        targets.top_k,
        activation_runs.top_k <> activation_runs.native_top_k as reobserved,
        targets.explainer,
        targets.predictor,
        targets.layer,
        targets.expert,
        targets.domain,
        mono.accuracy as ems,
        domain_scope.accuracy as edms,
        coalesce(routed.routed_tokens, 0) / domain_tokens.tokens as af,
        coalesce(routed.routed_tokens, 0) / domain_tokens.tokens * domain_scope.accuracy as edmrs,
        coalesce(mono.n, 0) as n_ems,
        coalesce(domain_scope.n, 0) as n_edms
    from targets
    inner join activation_runs
        on targets.model = activation_runs.model
        and targets.top_k = activation_runs.top_k
    left join accuracy as domain_scope
        on targets.model = domain_scope.model
        and targets.top_k = domain_scope.top_k
        and targets.explainer = domain_scope.explainer
        and targets.predictor = domain_scope.predictor
        and targets.layer = domain_scope.layer
        and targets.expert = domain_scope.expert
        and targets.domain = domain_scope.scope
    left join accuracy as mono
        on targets.model = mono.model
        and targets.top_k = mono.top_k
        and targets.explainer = mono.explainer
        and targets.predictor = mono.predictor
        and targets.layer = mono.layer
        and targets.expert = mono.expert
        and mono.scope = 'all'
    inner join domain_tokens
        on targets.model = domain_tokens.model
        and targets.top_k = domain_tokens.top_k
        and targets.domain = domain_tokens.domain
    left join routed
        on targets.model = routed.model
        and targets.top_k = routed.top_k
        and targets.domain = routed.domain
        and targets.layer = routed.layer
        and targets.expert = routed.expert
)

select * from final;
comment on view monosemanticity_scores is 'per routing (top_k), expert and target domain d (every expert with an EMS, explained in d or routed in d): EMS (accuracy of predictions under its P_mono explanation over scope-all test windows), EDMS^(d) (under P_domain^(d), over domain-d test windows; null without a valid prediction), AF^(d) and EDMRS^(d) = AF^(d) x EDMS^(d); invalid predictions left out';
comment on column monosemanticity_scores.model is 'base model name';
comment on column monosemanticity_scores.top_k is 'experts per token of the activation records the scores come from';
comment on column monosemanticity_scores.reobserved is 'the records re-observed the model with top-k changed (false: its own routing, what every other use reads)';
comment on column monosemanticity_scores.explainer is 'who explained (offline: the stand-in; else the judge name)';
comment on column monosemanticity_scores.predictor is 'who predicted';
comment on column monosemanticity_scores.layer is 'decoder layer index of the MoE block';
comment on column monosemanticity_scores.expert is 'routed expert index (0-based)';
comment on column monosemanticity_scores.domain is 'target domain d';
comment on column monosemanticity_scores.ems is 'EMS, prediction accuracy under the P_mono explanation over scope-all test windows';
comment on column monosemanticity_scores.edms is 'EDMS^(d), prediction accuracy under the P_domain^(d) explanation over domain-d test windows';
comment on column monosemanticity_scores.af is 'AF^(d), routed tokens of domain d / tokens of domain d';
comment on column monosemanticity_scores.edmrs is 'EDMRS^(d) = af x edms';
comment on column monosemanticity_scores.n_ems is 'scope-all test windows with a valid prediction';
comment on column monosemanticity_scores.n_edms is 'domain-d test windows with a valid prediction';
