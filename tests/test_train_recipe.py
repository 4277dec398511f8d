"""The three phases on tiny data with a tiny model: they run, write a model folder that loads and embeds, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from linker.errors import LinkerError
from linker.sources import Source
from linker.train import TrainConfig, train
from linker.train.loop import Budget, PhaseConfig, run_phase
from linker.train.model import state_average
from train_support import make_tiny_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert")


def _config(tiny_model: Path, **changes) -> TrainConfig:
    options = dict(base_model=str(tiny_model), batch_size=4, steps=4, distill_steps=2, checkpoint_every=2,
                   max_length=32, val_fraction=0.2, test_fraction=0.1, seed=1, progress=False,
                   interpolations=(0.5,), corpora=(str(DATA / "mini.mentions.jsonl"),), mention_val_fraction=0.5)
    options.update(changes)
    return TrainConfig(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "model"
    return train([Source.open(DATA / "mini.obo")], out, _config(tiny_model, keep_checkpoints=True))


def test_all_phases_run_and_log(trained: Path) -> None:
    card = json.loads((trained / "training.json").read_text())
    assert card["phases"]["contrastive"]["steps"] == 4
    assert card["phases"]["distill"]["steps"] == 2
    assert card["phases"]["soup"]["chosen"] in {c["candidate"] for c in card["phases"]["soup"]["candidates"]}
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    steps = [(e["phase"], e["step"]) for e in log if e["phase"] in {"contrastive", "distill"}]
    assert steps == [("contrastive", 2), ("contrastive", 4), ("distill", 2)]
    assert all(np.isfinite(e["loss"]) and "acc@1" in e["validation"] for e in log if e["phase"] in {"contrastive", "distill"})
    assert {e["candidate"] for e in log if e["phase"] == "soup"} >= {"last", "uniform_soup", "interpolate_0.5"}
    held = dict(line.split("\t") for line in (trained / "heldout.tsv").read_text().splitlines())
    assert held and set(held.values()) <= {"val", "test"}


def test_phase_3_keeps_an_average_only_beyond_the_margin(trained: Path) -> None:
    soup = json.loads((trained / "training.json").read_text())["phases"]["soup"]
    last, *others = soup["candidates"]
    assert last["candidate"] == "last" and "z" not in last and all("z" in c and "gain" in c for c in others)
    chosen = next(c for c in soup["candidates"] if c["candidate"] == soup["chosen"])
    assert chosen is last or chosen["z"] >= soup["soup_margin"] == 1.0


def test_greedy_soup_grows_from_the_last_model(trained: Path) -> None:
    soup = json.loads((trained / "training.json").read_text())["phases"]["soup"]
    names = [c["candidate"] for c in soup["candidates"]]
    trials = [n for n in names if n.startswith("greedy_trial+")]
    # phase 2 ended on its step-2 checkpoint: that is the last model itself, so it is not tried again
    assert (trained / "checkpoints" / "distill" / "step-000002.pt").exists()
    assert trials and "greedy_trial+distill/step-000002" not in trials
    assert set(trials) <= {"greedy_trial+contrastive/step-000002", "greedy_trial+contrastive/step-000004"}
    greedy = [c for c in soup["candidates"] if c["candidate"] == "greedy_soup"]
    assert all(c["members"][0] == "last" and len(c["members"]) >= 2 for c in greedy)


def test_two_ontologies_never_share_a_batch_a_mined_negative_or_a_validation_pool(tiny_model: Path,
                                                                                   tmp_path: Path) -> None:
    from linker.train.pairs import build_pairs

    corpus = tmp_path / "train.mentions.jsonl"
    corpus.write_text("".join(json.dumps({"text": text, "ids": [cid]}) + "\n" for text, cid in [
        ("skin cancers", "MESH:D012878"), ("tumours of the colon", "MESH:D003110"), ("fits", "HP:0001250"),
        ("epileptic fits", "HP:0001250"), ("high temperature", "HP:0001945")]))
    hpo, medic = Source.open(DATA / "mini.obo"), Source.open(DATA / "mini_ctd.tsv", "ctd")
    config = _config(tiny_model, corpora=(str(corpus),), mention_val_fraction=0.0, phases=("contrastive",),
                     mention_negatives=2, epochs=2)
    out = train([hpo], tmp_path / "m", config, extra_sources=[medic])
    pairset = build_pairs([hpo], extra_sources=[medic], corpora=[corpus], seed=config.seed,
                          val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                          mention_val_fraction=0.0)
    source = {cid: c.source for cid, c in pairset.concepts.items()}
    repeat = json.loads((out / "training.json").read_text())["mention_repeat"]
    pairs = pairset.pairs + [p for p in pairset.pairs if p.kind == "mention"] * (repeat - 1)
    folder = out / "checkpoints" / "contrastive"
    batches = json.loads((folder / "batches.json").read_text())
    assert all(0 <= i < len(pairs) for batch in batches for i in batch)
    per_batch = [{source[pairs[i].concept_id] for i in batch} for batch in batches]
    assert all(len(s) == 1 for s in per_batch) and set().union(*per_batch) == set(source.values())
    negatives = json.loads((folder / "negatives.json").read_text())
    assert {cid.split(":")[0] for _, cid, _ in negatives} == {"HP", "MESH"}
    for _, cid, negs in negatives:
        assert negs and all(source[owner] == source[cid] for _, owner in negs)
    tasks = json.loads((out / "validation.json").read_text())["tasks"]
    assert tasks and all(cid.startswith("HP:") for t in tasks for _, cid in t["index"])


def test_mention_repeat_is_given_or_derived_from_the_mention_share(tiny_model: Path) -> None:
    from linker.train.pairs import Pair
    from linker.train.plans import mention_repeat

    pairs = [Pair(f"C{i}", f"a{i}", f"b{i}", "synonym") for i in range(70)] + [Pair("C0", "m", "a0", "mention")] * 3
    assert mention_repeat(_config(tiny_model), pairs) == 10  # 0.3 * 70 / (0.7 * 3)
    assert mention_repeat(_config(tiny_model, mention_share=0.0), pairs) == 1
    assert mention_repeat(_config(tiny_model, mention_repeat=4), pairs) == 4
    assert mention_repeat(_config(tiny_model), pairs[:70]) == 1  # no corpus
    with pytest.raises(LinkerError, match="mention share 1.0"):
        mention_repeat(_config(tiny_model, mention_share=1.0), pairs)


def test_a_bad_mention_share_fails_before_the_base_model_is_used(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(LinkerError, match="mention share -0.5"):
        train([Source.open(DATA / "mini.obo")], tmp_path / "m", _config(tiny_model, mention_share=-0.5))
    assert not (tmp_path / "m" / "validation.json").exists()


def test_pick_candidate_needs_the_margin_and_then_the_best_score() -> None:
    from linker.train.soup import pick_candidate

    def entry(name: str, acc: float, z: float | None = None) -> dict:
        return {"candidate": name, "validation": {"acc@1": acc}, **({} if z is None else {"z": z})}

    entries = [entry("last", 0.60), entry("noisy", 0.64, 0.8), entry("clear", 0.62, 1.5), entry("clearer", 0.63, 2.5)]
    assert pick_candidate(entries, 1.0) == "clearer"
    assert pick_candidate(entries, 3.0) == "last"
    assert pick_candidate(entries, 0.0) == "noisy"  # margin 0: the best validation score wins
    assert pick_candidate([entry("last", 0.6), entry("same", 0.6, 0.0)], 0.0) == "last"  # ties keep the earlier


def test_batch_plan_and_validation_task_are_kept_for_a_resumed_run(trained: Path) -> None:
    plan = json.loads((trained / "checkpoints" / "contrastive" / "batches.json").read_text())
    card = json.loads((trained / "training.json").read_text())
    planned = [i for batch in plan for i in batch]
    assert len(planned) == len(set(planned)) and len(planned) >= card["pairs"]["pairs"] - 2
    tasks = {t["name"]: t for t in json.loads((trained / "validation.json").read_text())["tasks"]}
    held = dict(line.split("\t") for line in (trained / "heldout.tsv").read_text().splitlines())
    gold = {cid for ids in tasks["val_synonyms"]["gold"] for cid in ids}
    assert tasks["val_synonyms"]["queries"] and gold <= {cid for cid, part in held.items() if part == "val"}
    for task in tasks.values():  # each query's own concept is among the ranked names
        assert {cid for ids in task["gold"] for cid in ids} <= {cid for _, cid in task["index"]}
    # mentions rank against every name of their concept (as an index holds them), synonyms against preferred names
    assert {text for text, cid in tasks["val_mentions"]["index"] if cid == "HP:0001250"} >= {"Seizure", "Seizures"}
    assert len({cid for _, cid in tasks["val_synonyms"]["index"]}) == len(tasks["val_synonyms"]["index"])
    # "a fit" is the one mention text the seeded split holds out at this fraction: validated on, never trained on
    assert tasks["val_mentions"]["queries"] == ["a fit"]
    # the one mention pair trained on, "high temperature" (Fever), gets its mined negatives: names of other
    # training concepts, never its own
    mined = json.loads((trained / "checkpoints" / "contrastive" / "negatives.json").read_text())
    assert [(anchor, cid) for anchor, cid, _ in mined] == [("high temperature", "HP:0001945")]
    assert mined[0][2] and all(owner != "HP:0001945" and held.get(owner) is None for _, owner in mined[0][2])
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    scores = log[-1]["validation"]
    assert scores["acc@1"] == pytest.approx((scores["val_synonyms"]["acc@1"] + scores["val_mentions"]["acc@1"]) / 2,
                                            abs=1e-4)


def test_mention_pairs_are_repeated_in_the_plan(tiny_model: Path, tmp_path: Path) -> None:
    out = train([Source.open(DATA / "mini.obo")], tmp_path / "m",
                _config(tiny_model, phases=("contrastive",), mention_repeat=3, steps=1, hard_negatives=False))
    card = json.loads((out / "training.json").read_text())
    plan = json.loads((out / "checkpoints" / "contrastive" / "batches.json").read_text())
    assert card["pairs"]["pairs_mention"] > 0
    planned = sum(len(batch) for batch in plan)
    assert card["pairs"]["pairs"] + 2 * card["pairs"]["pairs_mention"] - 2 <= planned


def test_mined_negatives_are_embedded_with_every_planned_mention_pair(tiny_model: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import linker.train.recipe as recipe

    embedded: list[list[str]] = []
    real = recipe.embed

    def spy(net, tokenizer, texts, *args, **kwargs):  # type: ignore[no-untyped-def]
        embedded.append(list(texts))
        return real(net, tokenizer, texts, *args, **kwargs)

    monkeypatch.setattr(recipe, "embed", spy)
    out = train([Source.open(DATA / "mini.obo")], tmp_path / "m",
                _config(tiny_model, phases=("contrastive",), mention_repeat=3, steps=None, mention_val_fraction=0.5))
    mined = json.loads((out / "checkpoints" / "contrastive" / "negatives.json").read_text())
    (anchor, _, negatives), = mined
    texts = [text for text, _ in negatives]
    assert len(texts) == 2  # the default mention_negatives
    assert embedded.count(texts) == 3  # once per planned copy of the mention pair


def test_output_folder_loads_with_linker_encoder_and_embeds(trained: Path) -> None:
    from linker.encoders.torch_backend import TransformerEncoder

    for folder in (trained, trained / "phase1", trained / "phase2"):
        encoder = TransformerEncoder(folder, device="cpu")
        vectors = encoder.encode(["Seizure", "Short stature"])
        assert vectors.shape == (2, 32)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert encoder.max_length == 32


def test_output_folder_is_a_sentence_transformers_model(trained: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    from linker.encoders.torch_backend import TransformerEncoder

    theirs = st.SentenceTransformer(str(trained), device="cpu").encode(["Seizure", "Fever"])
    ours = TransformerEncoder(trained, device="cpu").encode(["Seizure", "Fever"])
    assert np.allclose(theirs, ours, atol=1e-5)


def test_build_uses_the_folder_as_is(trained: Path, tmp_path: Path) -> None:
    from linker.build import build_index
    from linker.index import ConceptIndex

    folder = build_index(Source.open(DATA / "mini.obo"), tmp_path / "index", model=str(trained), progress=False)
    index = ConceptIndex.load(folder, gpu=False)
    assert index.meta["encoder"]["dimension"] == 32
    assert index.search(["Seizure"], k=1)[0][0].concept_id == "HP:0001250"  # exact name match


def test_rerun_of_a_finished_run_skips_phases_and_other_settings_are_refused(trained: Path, tiny_model: Path) -> None:
    before = (trained / "phase1" / "model.safetensors").stat().st_mtime_ns
    train([Source.open(DATA / "mini.obo")], trained, _config(tiny_model))
    assert (trained / "phase1" / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(LinkerError, match=r"other settings \(lr: 0.0001 there, 0.001 now; see "):
        train([Source.open(DATA / "mini.obo")], trained, _config(tiny_model, lr=1e-3))


def test_unknown_phase_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(LinkerError, match="unknown phase"):
        train([Source.open(DATA / "mini.obo")], tmp_path, _config(tiny_model, phases=("contrastive", "finetune")))


def _phase_setup(tiny_model: Path):
    from transformers import AutoModel

    torch.manual_seed(0)
    net = AutoModel.from_pretrained(str(tiny_model))
    batches = [torch.randint(0, 1000, (3, 6)) for _ in range(6)]

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        hidden = net(input_ids=batch).last_hidden_state.mean(1)
        return (hidden ** 2).mean()

    return net, batches, loss_fn


def test_phase_resumes_from_last_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    config = PhaseConfig("contrastive", lr=1e-3, checkpoint_every=2, budget=Budget(), progress_bar=False)
    net, batches, loss_fn = _phase_setup(tiny_model)
    run_phase(net, batches, loss_fn, config=config, folder=tmp_path / "a", log_path=tmp_path / "a.jsonl",
              device="cpu", batch_items=lambda b: int(b.shape[0]))
    uninterrupted = {k: v.clone() for k, v in net.state_dict().items()}

    net, batches, loss_fn = _phase_setup(tiny_model)
    calls: list[int] = []

    def failing(batch: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 5:  # after the checkpoint at step 4
            raise KeyboardInterrupt
        return loss_fn(batch)

    with pytest.raises(KeyboardInterrupt):
        run_phase(net, batches, failing, config=config, folder=tmp_path / "b", log_path=tmp_path / "b.jsonl",
                  device="cpu", batch_items=lambda b: int(b.shape[0]))
    net, batches, loss_fn = _phase_setup(tiny_model)  # a fresh process: weights back to the base
    seen: list[int] = []
    state = run_phase(net, batches, lambda b: (seen.append(1), loss_fn(b))[1], config=config, folder=tmp_path / "b",
                      log_path=tmp_path / "b.jsonl", device="cpu", batch_items=lambda b: int(b.shape[0]))
    assert len(seen) == 2 and state["step"] == 6 and state["items"] == 18
    for key, value in net.state_dict().items():
        assert torch.allclose(value, uninterrupted[key], atol=1e-6), key


def test_budget_in_steps_and_items_stops_the_phase(tiny_model: Path, tmp_path: Path) -> None:
    net, batches, loss_fn = _phase_setup(tiny_model)
    config = PhaseConfig("distill", checkpoint_every=100, budget=Budget(items=7), progress_bar=False)
    state = run_phase(net, batches, loss_fn, config=config, folder=tmp_path / "c", log_path=tmp_path / "c.jsonl",
                      device="cpu", batch_items=lambda b: int(b.shape[0]))
    assert state["step"] == 3 and state["done"]  # 3 batches of 3 items pass the budget of 7


def test_state_average_is_a_weighted_mean() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor([5])}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor([7])}
    assert torch.equal(state_average([a, b])["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(state_average([a, b], [0.75, 0.25])["w"], torch.tensor([1.5, 3.5]))
    assert torch.equal(state_average([a, b])["n"], torch.tensor([5]))


class _CountingEncoder:
    """Embeds a text as a one-hot of its first letter and counts the texts it was asked to embed."""

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return np.array([[float(ord(t[0]) == c) for c in range(128)] for t in texts], dtype=np.float32)


def test_base_names_take_preferred_rows_from_the_all_names_embedding() -> None:
    from linker.train.pairs import OntologyConcept
    from linker.train.validation import BaseNames

    concepts = {"C1": OntologyConcept("C1", "alpha", synonyms={"EXACT": ["apex", "arc"]}),
                "C2": OntologyConcept("C2", "beta"),
                "C3": OntologyConcept("C3", "gamma", synonyms={"EXACT": ["gem"], "RELATED": ["giant"]})}
    shared = _CountingEncoder()
    names = BaseNames(concepts, ("EXACT",), shared, all_names_needed=True)  # type: ignore[arg-type]
    texts, ids, vectors = names(False)
    assert (texts, ids) == (["alpha", "beta", "gamma"], ["C1", "C2", "C3"])
    assert sorted(shared.embedded) == sorted(["alpha", "apex", "arc", "beta", "gamma", "gem"])  # each name once
    assert names(True)[0] == ["alpha", "apex", "arc", "beta", "gamma", "gem"]
    assert len(shared.embedded) == 6  # cached
    alone = _CountingEncoder()
    assert np.array_equal(BaseNames(concepts, ("EXACT",), alone, all_names_needed=False)(False)[2], vectors)
    assert alone.embedded == ["alpha", "beta", "gamma"]  # without a corpus only the preferred names are embedded


def test_cli_train_verb(tiny_model: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from linker.cli import cli

    result = CliRunner().invoke(cli, ["-q", "train", str(DATA / "mini.obo"), "--out", str(tmp_path / "m"),
                                      "--base-model", str(tiny_model), "--phases", "contrastive", "--steps", "2",
                                      "--batch-size", "4", "--holdout", "0.2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "modules.json").exists() and (tmp_path / "m" / "phase1").is_dir()
    settings = json.loads((tmp_path / "m" / "training.json").read_text())["settings"]
    assert settings["interpolations"] == [0.75]


def test_cli_train_extra_ontology_is_recorded_and_held_out_nowhere(tiny_model: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from linker.cli import cli

    medic = tmp_path / "CTD_diseases.tsv"  # the name tells the format, as for the real file
    medic.write_bytes((DATA / "mini_ctd.tsv").read_bytes())
    result = CliRunner().invoke(cli, ["-q", "train", str(DATA / "mini.obo"), "--extra-ontology", str(medic),
                                      "--out", str(tmp_path / "m"), "--base-model", str(tiny_model),
                                      "--phases", "contrastive", "--steps", "2", "--batch-size", "4",
                                      "--holdout", "0.2"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "m" / "training.json").read_text())
    assert [(s["path"], s["format"]) for s in card["settings"]["extra_sources"]] == [(str(medic), "ctd")]
    assert card["pairs"]["concepts_extra"] == 4
    held = (tmp_path / "m" / "heldout.tsv").read_text()
    assert held.startswith("HP:") and "MESH:" not in held


@pytest.mark.parametrize("weights", ["0.5,x", "1.0", "0"])
def test_cli_train_refuses_bad_interpolation_weights(weights: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from linker.cli import cli

    result = CliRunner().invoke(cli, ["-q", "train", str(DATA / "mini.obo"), "--out", str(tmp_path / "m"),
                                      "--interpolations", weights])
    assert result.exit_code == 2 and "--interpolations" in result.output and repr(weights) in result.output
    assert not (tmp_path / "m").exists()


def test_auto_precision_is_bf16_only_on_cuda_or_a_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from linker.train import loop

    monkeypatch.setattr(loop, "native_bf16_cpu", lambda: True)
    assert loop.resolve_amp("cpu", "auto") == "bf16"
    monkeypatch.setattr(loop, "native_bf16_cpu", lambda: False)
    assert loop.resolve_amp("cpu", "auto") == "off"
    assert loop.resolve_amp("cpu", "bf16") == "bf16" and loop.resolve_amp("cuda", "off") == "off"
    with pytest.raises(LinkerError, match="'half'"):
        loop.resolve_amp("cpu", "half")


def test_similarities_stay_float32_under_autocast() -> None:
    from linker.train.model import similarities

    generator = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 64, generator=generator), dim=1)
    b = torch.nn.functional.normalize(torch.randn(8, 64, generator=generator), dim=1)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        plain = a @ b.T
        scores = similarities(a, b, 20.0)
    assert plain.dtype == torch.bfloat16  # what the loss would get without the guard
    assert scores.dtype == torch.float32
    assert torch.allclose(scores, 20.0 * (a @ b.T), atol=1e-5)


def test_live_encoder_embeds_under_the_runs_autocast_in_float32(tiny_model: Path) -> None:
    from linker.train.model import LiveEncoder, load_base

    tokenizer, net, _ = load_base(str(tiny_model))
    texts = ["Seizure", "Abnormality of the kidney", "Short stature"]
    plain = LiveEncoder(net, tokenizer, 32, "cpu").encode(texts)
    entered: list[bool] = []

    def bf16():
        entered.append(True)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    mixed = LiveEncoder(net, tokenizer, 32, "cpu", autocast=bf16).encode(texts)
    assert entered and mixed.dtype == np.float32
    assert np.allclose(np.linalg.norm(mixed, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(mixed, plain) and (mixed * plain).sum(axis=1).min() > 0.99


def test_phase_summary_records_the_precision_used(trained: Path) -> None:
    from linker.train.loop import resolve_amp

    card = json.loads((trained / "training.json").read_text())
    assert card["phases"]["contrastive"]["amp"] == resolve_amp("cpu", "auto")
    assert card["phases"]["distill"]["amp"] == resolve_amp("cpu", "auto")


def test_frozen_token_embeddings_stay_those_of_the_base_model_through_both_phases(tiny_model: Path,
                                                                                 tmp_path: Path) -> None:
    from transformers import AutoModel

    out = train([Source.open(DATA / "mini.obo")], tmp_path / "frozen",
                _config(tiny_model, phases=("contrastive", "distill"), corpora=(), freeze_embeddings=True))
    base, trained = (AutoModel.from_pretrained(str(folder)) for folder in (tiny_model, out))
    assert torch.equal(base.get_input_embeddings().weight, trained.get_input_embeddings().weight)
    before = base.state_dict()
    changed = [name for name, weight in trained.state_dict().items() if not torch.equal(weight, before[name])]
    assert changed and all("word_embeddings" not in name for name in changed)
    assert json.loads((out / "training.json").read_text())["settings"]["freeze_embeddings"] is True


def test_synonym_pairs_rank_their_synonym_against_names_mined_near_it(tiny_model: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import linker.train.recipe as recipe
    from linker.normalize import normalize

    backward_columns: list[tuple[int, int]] = []
    real = recipe.symmetric_infonce

    def spy(logits: torch.Tensor, forward: torch.Tensor | None = None,
            backward: torch.Tensor | None = None) -> torch.Tensor:
        backward_columns.append((logits.shape[0], logits.shape[0] if backward is None else backward.shape[1]))
        return real(logits, forward, backward)

    monkeypatch.setattr(recipe, "symmetric_infonce", spy)
    out = train([Source.open(DATA / "mini.obo")], tmp_path / "s",
                _config(tiny_model, phases=("contrastive",), corpora=(), synonym_negatives=2, steps=None))
    card = json.loads((out / "training.json").read_text())
    assert card["settings"]["synonym_negatives"] == 2
    held = {line.split("\t")[0] for line in (out / "heldout.tsv").read_text().splitlines()}
    mined = json.loads((out / "checkpoints" / "contrastive" / "negatives.json").read_text())
    pairs = [p for p in recipe.build_pairs([Source.open(DATA / "mini.obo")], seed=1, val_fraction=0.2,
                                           test_fraction=0.1, mention_val_fraction=0.5).pairs if p.kind == "synonym"]
    assert sorted((q, cid) for q, cid, _ in mined) == sorted((p.positive, p.concept_id) for p in pairs)
    for query, cid, negatives in mined:
        assert len(negatives) == 2 and len({owner for _, owner in negatives}) == 2
        assert all(owner != cid and owner not in held and normalize(text) != normalize(query)
                   for text, owner in negatives)
    # synonym batches rank each synonym against the batch's names and its mined names
    assert any(columns > size for size, columns in backward_columns)


def test_settings_added_later_are_recorded_only_off_the_value_older_runs_had(trained: Path) -> None:
    settings = json.loads((trained / "training.json").read_text())["settings"]
    # the defaults (no synonym negatives when there is a corpus, as in the runs recorded before the option)
    assert not {"freeze_embeddings", "synonym_negatives", "remine_every"} & set(settings)
    assert settings["mention_negatives"] == 2  # a setting older than the rule is always recorded


def test_synonym_negatives_default_to_two_without_a_corpus(tiny_model: Path, tmp_path: Path) -> None:
    out = train([Source.open(DATA / "mini.obo")], tmp_path / "plain",
                _config(tiny_model, phases=("contrastive",), corpora=(), steps=1))
    assert json.loads((out / "training.json").read_text())["settings"]["synonym_negatives"] == 2
    mined = json.loads((out / "checkpoints" / "contrastive" / "negatives.json").read_text())
    assert mined and all(len(negatives) == 2 for _, _, negatives in mined)


def test_negatives_are_mined_again_with_the_model_being_trained(tiny_model: Path, tmp_path: Path) -> None:
    import linker.train.plans as plans
    import linker.train.recipe as recipe
    from linker.train.loop import amp_context
    from linker.train.model import LiveEncoder, load_base

    config = _config(tiny_model, phases=("contrastive",), corpora=(), synonym_negatives=2, remine_every=2, lr=0.05,
                     keep_checkpoints=True)
    out = train([Source.open(DATA / "mini.obo")], tmp_path / "r", config)
    assert json.loads((out / "training.json").read_text())["settings"]["remine_every"] == 2
    folder = out / "checkpoints" / "contrastive"
    first, again = (json.loads((folder / name).read_text()) for name in ("negatives.json", "negatives-001.json"))
    assert [(q, cid) for q, cid, _ in again] == [(q, cid) for q, cid, _ in first]
    assert not (folder / "negatives-002.json").exists()  # the phase ends at step 4, before a second round
    assert any(a != b for (_, _, a), (_, _, b) in zip(first, again))  # 2 steps at a high rate moved the model

    # round 1 is what the model of step 2 mines (so a run resumed at that checkpoint mines the same)
    tokenizer, net, _ = load_base(str(tiny_model))
    net.load_state_dict(torch.load(folder / "step-000002.pt"))
    encoder = LiveEncoder(net, tokenizer, config.max_length, "cpu", autocast=amp_context("cpu", config.amp)[0])
    pairset = recipe.build_pairs([Source.open(DATA / "mini.obo")], seed=1, val_fraction=0.2, test_fraction=0.1,
                                 mention_val_fraction=0.5)
    names = recipe.BaseNames(pairset.concepts, config.scopes, encoder, all_names_needed=True)
    recomputed = plans.mined_negatives(pairset, config, encoder, names, tmp_path / "n.json", fresh=True)
    assert recomputed == {(q, cid): [(t, o) for t, o in negs] for q, cid, negs in again}


def test_set_up_shows_progress_before_the_first_step(tiny_model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Reading, loading, embedding the names, validating and mining each show a line from their first second,
    before phase 1's bar (on MEDIC they take over ten minutes)."""
    import linker.train.model as model_module

    monkeypatch.setattr(model_module, "PROGRESS_FROM", 1)  # the fixture's few names get their bar too
    train([Source.open(DATA / "mini.obo")], tmp_path / "shown",
          _config(tiny_model, phases=("contrastive",), steps=2, progress=True))
    err = capsys.readouterr().err
    stages = ["set-up: reading the ontologies", "set-up: loading the base model", "set-up: choosing the validation",
              "embedding", "set-up: validating the base model", "set-up: planning batches",
              "set-up: mining dictionary negatives", "contrastive"]
    positions = [err.find(stage) for stage in stages]
    assert -1 not in positions, dict(zip(stages, positions))
    assert positions[:3] == sorted(positions[:3]) and max(positions[:7]) < err.rfind("contrastive")


def test_a_finished_run_keeps_no_checkpoint_weights_and_returns_at_once(tiny_model: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    import linker.train.recipe as recipe

    config = _config(tiny_model, phases=("contrastive", "distill"))
    out = train([Source.open(DATA / "mini.obo")], tmp_path / "pruned", config)
    left = sorted(p.relative_to(out / "checkpoints").as_posix() for p in (out / "checkpoints").rglob("*") if p.is_file())
    assert left and not [p for p in left if p.endswith(".pt")]
    assert "contrastive/batches.json" in left and (out / "phase2" / "modules.json").exists()
    before = (out / "model.safetensors").read_bytes()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(recipe, "build_pairs", no_training)
    assert train([Source.open(DATA / "mini.obo")], out, config) == out
    assert (out / "model.safetensors").read_bytes() == before
