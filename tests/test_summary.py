"""labkit.summary (chapter 11): the measured table, the ledger, provenance, the seed comparison,
the headline declaration, and the chooser. Tiny hand-made results files; no training."""
import json
import math

import pytest

from labkit import summary
from labkit.chooser import FLOW, SEED_CASES, Answers, flow_dot, recommend
from labkit.results import Results, ResultsError, load_results, validate

ENV = {"device": "cpu", "device_name": "test cpu", "torch": "2.13.0", "transformers": "5.24.0",
       "peft": "0.21.2", "trl": "1.16.0", "python": "3.11.7", "git_commit": "a" * 40,
       "timestamp": "2026-12-07T08:00:00+00:00"}


def _run(name, method="lora", trainable=1000, total=100_000, examples=100, wall=10.0, memory=500.0,
         metrics=None, sha="f" * 64):
    return {"name": name, "method": method, "base_model": "labworld-base", "trainable_params": trainable,
            "total_params": total, "train_examples": examples, "train_tokens": examples * 50,
            "wall_time_s": wall, "peak_memory_mb": memory, "memory_kind": "cpu_rss", "artifact_mb": 0.5,
            "metrics": metrics if metrics is not None else {"accuracy": 0.8}, "base_model_sha256": sha}


def _doc(chapter, runs, claims=(), headline=None, profile="cpu", **env):
    doc = {"schema_version": 1, "chapter": chapter, "method": chapter, "profile": profile,
           "environment": {**ENV, **env}, "runs": list(runs), "claims": list(claims)}
    if headline:
        doc["headline"] = headline
    validate(doc)
    return doc


def _claim(id, holds, interval=None):
    measured = 0.5 if holds else -0.5
    c = {"id": id, "text": f"claim {id}", "measured": measured, "threshold": 0.0, "comparison": ">",
         "holds": holds}
    if interval:
        c["interval"], c["confidence"] = interval, 0.95
    return c


def _book():
    """Four chapters: prompting (no training), LoRA and full FT with headlines, RLHF without one."""
    return {
        "01_prompt_engineering": _doc(
            "01_prompt_engineering",
            [
                _run("0-shot", "prompting", trainable=0, examples=0, metrics={"accuracy": 0.2}),
                _run("3-shot", "prompting", trainable=0, examples=0, metrics={"accuracy": 0.5}),
            ],
            [_claim("shots", True, [0.1, 0.4])],
            headline={"run": "3-shot", "metric": "accuracy", "before": {"run": "0-shot"}, "claim": "shots"},
        ),
        "03_lora": _doc(
            "03_lora",
            [
                _run(
                    "lora legal",
                    trainable=1000,
                    wall=10.0,
                    memory=500.0,
                    examples=100,
                    metrics={"accuracy": 0.9, "accuracy_before": 0.3},
                )
            ],
            [_claim("beats_base", True, [0.4, 0.8]), _claim("less_memory", False)],
            headline={
                "run": "lora legal",
                "metric": "accuracy",
                "before": {"metric": "accuracy_before"},
                "claim": "beats_base",
            },
        ),
        "04_full_finetuning": _doc(
            "04_full_finetuning",
            [
                _run(
                    "full",
                    "full_ft",
                    trainable=100_000,
                    wall=20.0,
                    memory=1000.0,
                    examples=100,
                    metrics={"ppl": 3.0},
                )
            ],
            [_claim("fits", True)],
            headline={
                "run": "full",
                "metric": "ppl",
                "before": {"value": 5.0, "label": "base model"},
                "higher_is_better": False,
            },
        ),
        "06_rlhf": _doc(
            "06_rlhf", [_run("DPO", "dpo", examples=300)], [_claim("a", True), _claim("b", False)]
        ),
    }


def _write(folder, docs, profile="cpu"):
    (folder / profile).mkdir(parents=True, exist_ok=True)
    for stem, doc in docs.items():
        (folder / profile / f"{stem}.json").write_text(json.dumps(doc))


def _row(table, chapter):
    return table[table["chapter"] == chapter].iloc[0]


def test_table_has_one_row_per_seed_method_in_book_order():
    table = summary.measured_table(_book())
    assert list(table["chapter"]) == [row.chapter for row in summary.SEED]
    assert _row(table, "03_lora")["method"] == "LoRA / PEFT"


def test_headline_numbers_come_from_the_declared_run_and_metric():
    table = summary.measured_table(_book())
    lora = _row(table, "03_lora")
    assert lora["status"] == "measured" and lora["run"] == "lora legal"
    assert (lora["trainable_params"], lora["peak_memory_mb"], lora["wall_time_s"]) == (1000, 500.0, 10.0)
    assert lora["trainable_pct"] == pytest.approx(1.0)
    assert (lora["before"], lora["after"]) == (0.3, 0.9)          # another metric of the same run
    assert lora["gain"] == pytest.approx(0.6) and lora["interval"] == [0.4, 0.8]
    prompting = _row(table, "01_prompt_engineering")
    assert (prompting["before"], prompting["after"]) == (0.2, 0.5)  # the same metric of another run
    full = _row(table, "04_full_finetuning")
    assert (full["before"], full["after"]) == (5.0, 3.0)
    assert full["gain"] == pytest.approx(2.0)                       # lower is better: 5 -> 3 gains 2
    assert (lora["claims_held"], lora["claims_total"]) == (1, 2)


def test_missing_chapter_is_marked_missing_never_zero(tmp_path):
    _write(tmp_path, _book())
    (tmp_path / "cpu" / "03_lora.json").unlink()
    table = summary.measured_table(summary.book_results("cpu", tmp_path))
    lora = _row(table, "03_lora")
    assert lora["status"].startswith("missing")
    numeric = ["trainable_params", "peak_memory_mb", "wall_time_s", "train_examples", "after", "gain",
               "claims_held", "claims_total"]
    assert all(math.isnan(lora[c]) for c in numeric)
    assert _row(table, "04_full_finetuning")["status"] == "measured"


def test_a_changed_results_file_changes_the_table(tmp_path):
    _write(tmp_path, _book())
    before = summary.measured_table(summary.book_results("cpu", tmp_path))
    path = tmp_path / "cpu" / "03_lora.json"
    doc = json.loads(path.read_text())
    doc["runs"][0]["peak_memory_mb"] = 777.0
    doc["runs"][0]["metrics"]["accuracy"] = 0.45
    path.write_text(json.dumps(doc))
    after = summary.measured_table(summary.book_results("cpu", tmp_path))
    assert _row(before, "03_lora")["peak_memory_mb"] == 500.0
    assert _row(after, "03_lora")["peak_memory_mb"] == 777.0
    assert _row(after, "03_lora")["gain"] == pytest.approx(0.15)


def test_no_headline_declared_keeps_claims_but_guesses_no_numbers():
    rlhf = _row(summary.measured_table(_book()), "06_rlhf")
    assert rlhf["status"].startswith("no headline declared")
    assert (rlhf["claims_held"], rlhf["claims_total"]) == (1, 2)
    assert math.isnan(rlhf["peak_memory_mb"]) and math.isnan(rlhf["after"])


def test_a_new_chapter_gets_its_own_row_and_the_summary_skips_its_own_file(tmp_path):
    docs = _book()
    docs["12_new_method"] = _doc(
        "12_new_method", [_run("new")], headline={"run": "new", "metric": "accuracy"}
    )
    docs["11_summary"] = {**_doc("11_summary", [_run("x")]), "inputs": {"03_lora.json": "0" * 64}}
    _write(tmp_path, docs)
    loaded = summary.book_results("cpu", tmp_path)
    assert "11_summary" not in loaded and "12_new_method" in loaded
    table = summary.measured_table(loaded)
    assert table["chapter"].iloc[-1] == "12_new_method" and table["status"].iloc[-1] == "measured"
    assert set(summary.input_digests("cpu", tmp_path)) == {f"{s}.json" for s in docs if s != "11_summary"}


def test_ledger_lists_every_claim_and_totals_them():
    ledger = summary.claim_ledger(_book())
    assert len(ledger) == 6
    assert list(ledger.columns) == ["chapter", "id", "text", "measured", "interval", "comparison",
                                    "threshold", "holds"]
    totals = summary.ledger_totals(ledger)
    assert totals.loc["03_lora"].tolist() == [1, 2, 1]
    assert totals.loc["06_rlhf"].tolist() == [1, 2, 1]
    assert totals.loc["book"].tolist() == [4, 6, 2]


def test_one_build_gives_no_provenance_warning():
    docs = _book()
    assert summary.provenance_warnings(docs) == []
    assert set(summary.provenance(docs)["commit"]) == {"a" * 10}


@pytest.mark.parametrize("change, words", [
    ({"profile": "smoke"}, "mixed profiles"),
    ({"git_commit": "b" * 40}, "mixed commits"),
    ({"transformers": "5.25.0"}, "mixed transformers versions"),
    ({"sha": "e" * 64}, "mixed base models"),
])
def test_a_mixed_build_is_named(change, words):
    docs = _book()
    doc = docs["03_lora"]
    if "profile" in change:
        doc["profile"] = change["profile"]
    elif "sha" in change:
        doc["runs"][0]["base_model_sha256"] = change["sha"]
    else:
        doc["environment"].update(change)
    warnings = summary.provenance_warnings(docs)
    assert len(warnings) == 1 and warnings[0].startswith(words) and "03_lora" in warnings[0]


def test_another_model_by_name_is_no_mixed_build():
    docs = _book()
    docs["10_real_model"] = _doc("10_real_model", [{**_run("real", sha="1" * 64), "base_model": "smollm2"}])
    assert summary.provenance_warnings(docs) == []


def test_seed_levels_read_ranges():
    assert summary.seed_levels("Low–Medium") == {"Low", "Medium"}
    assert summary.seed_levels("Very high") == {"Very high"}
    assert summary.seed_levels("—") == set()


def test_derived_levels_follow_the_stated_rule():
    comparison = summary.seed_comparison(summary.measured_table(_book())).set_index("chapter")
    # LoRA: 10 s x 500 MB against full FT's 20 s x 1000 MB = 0.25 -> Medium; seed says Low–Medium.
    assert comparison.loc["03_lora", "compute_cost_measured"] == "Medium"
    assert comparison.loc["03_lora", "compute_cost_agrees"] == "agree"
    assert comparison.loc["04_full_finetuning", "compute_cost_measured"] == "Very high"  # ratio 1
    assert comparison.loc["04_full_finetuning", "compute_cost_agrees"] == "n/a (the reference)"
    assert comparison.loc["01_prompt_engineering", "compute_cost_measured"] == "None"
    assert comparison.loc["01_prompt_engineering", "data_need_agrees"] == "agree"
    assert comparison.loc["03_lora", "data_need_measured"] == "High"                  # 100 / 100
    assert comparison.loc["03_lora", "data_need_agrees"] == "disagree"                # seed: Medium
    assert comparison.loc["06_rlhf", "compute_cost_agrees"] == "n/a"                  # no headline
    assert "00_base_model" not in comparison.index                                    # context row


@pytest.mark.parametrize("wall, examples, cost, data", [
    (1.0, 10, "Low", "Low"), (3.9, 19, "Low", "Low"), (4.0, 20, "Medium", "Medium"),
    (9.9, 59, "Medium", "Medium"), (10.0, 60, "High", "High"), (17.9, 100, "High", "High"),
    (18.0, 500, "Very high", "High")])
def test_level_bins(wall, examples, cost, data):
    # reference: 20 s x 1000 MB, 100 examples; the row: wall s x 1000 MB
    table = summary.measured_table(_book())
    ref = _row(table, "04_full_finetuning")
    row = ref.copy()
    row["wall_time_s"], row["train_examples"] = wall, examples
    assert summary.cost_level(row, ref) == cost and summary.data_level(row, ref) == data


def test_derived_levels_need_the_reference():
    docs = _book()
    del docs["04_full_finetuning"]
    comparison = summary.seed_comparison(summary.measured_table(docs)).set_index("chapter")
    assert comparison.loc["03_lora", "compute_cost_measured"] == "n/a"
    assert comparison.loc["01_prompt_engineering", "compute_cost_measured"] == "None"


# ---- the headline declaration (labkit.results) ----------------------------------------------
def _results():
    r = Results("03_lora", "LoRA / PEFT", "smoke")
    r.add_run(_run("lora legal", metrics={"accuracy": 0.9, "accuracy_before": 0.3}))
    r.claim("beats_base", "LoRA beats the base", 0.6, 0.0, ">", interval=[0.4, 0.8])
    return r


def test_headline_is_written_and_read_back(tmp_path):
    r = _results()
    r.headline("lora legal", "accuracy", before_metric="accuracy_before", claim="beats_base")
    r.write(tmp_path)
    doc = load_results("smoke", tmp_path)["03_lora"]
    assert doc["headline"] == {"run": "lora legal", "metric": "accuracy",
                               "before": {"metric": "accuracy_before"}, "claim": "beats_base"}
    head = summary.headline(doc)
    assert (head["before"], head["after"], head["interval"]) == (0.3, 0.9, [0.4, 0.8])


def test_a_file_without_headline_is_unchanged():
    assert "headline" not in _results().to_dict()


@pytest.mark.parametrize("kwargs, words", [
    ({"run": "lora", "metric": "accuracy"}, "headline'.run names 'lora'"),
    ({"run": "lora legal", "metric": "f1"}, "has no metric 'f1'"),
    ({"run": "lora legal", "metric": "accuracy", "claim": "nope"}, "not a claim"),
    ({"run": "lora legal", "metric": "accuracy", "before_run": "base"}, "before: no metric"),
])
def test_a_headline_naming_nothing_is_refused(tmp_path, kwargs, words):
    r = _results()
    r.headline(**kwargs)
    with pytest.raises(ResultsError, match=words):
        r.write(tmp_path)


def test_a_non_finite_before_value_is_refused():
    doc = _results().to_dict()
    doc["headline"] = {"run": "lora legal", "metric": "accuracy", "before": {"value": float("nan")}}
    with pytest.raises(ResultsError, match="finite number"):
        validate(doc)


# ---- at real scale ---------------------------------------------------------------------------
def test_real_scale_estimate_orders_the_methods():
    table = summary.real_scale_memory(batch_size=1, seq_len=128, models={"135M": "smollm2-135m.json"})
    col = table["135M"]
    # weights 134.5M x 2 bytes = 0.27 GB; full FT adds gradients and two moments of every weight, and at
    # 128 tokens its gradients (with the tied embedding's second fp32 gradient, 49,152 x 576) outweigh the
    # activations and logits they replace (no baseline on a GPU)
    assert col["full_ft"] == pytest.approx((4 * 134_515_008 * 2 + 49_152 * 576 * 4) / 1e9, rel=0.01)
    assert col["prompt_tuning"] < col["lora"] < col["full_ft"] < col["rlhf"]
    assert col["rlhf"] - col["full_ft"] == pytest.approx(134_515_008 * 2 / 1e9, rel=0.01)


# ---- the chooser ------------------------------------------------------------------------------
@pytest.mark.parametrize("case, answers, expected", SEED_CASES)
def test_the_seed_cases_get_the_documented_answer(case, answers, expected):
    assert recommend(answers).method == expected


def test_chooser_rules_that_the_seed_cases_do_not_reach():
    assert recommend(Answers(labeled_examples=10, unlabeled_domain_text=True)).method == "domain_adaptation"
    assert recommend(Answers(labeled_examples=10)).method == "prompting"
    # lots of data, too little memory for full fine-tuning of an 8B model (18 B/param = 144 GB)
    assert recommend(Answers(labeled_examples=100_000, gpu_memory_gb=80, model_params_b=8)).method == "lora"
    assert (
        recommend(Answers(labeled_examples=100_000, gpu_memory_gb=144, model_params_b=8)).method == "full_ft"
    )


def test_every_recommendation_is_a_leaf_of_the_flow_and_links_its_chapter():
    nodes = {n for n, _, _ in FLOW}
    leaves = {t for _, _, edges in FLOW for _, t in edges} - nodes
    reached = {recommend(Answers(weights=w, labeled_examples=n, unlabeled_domain_text=d, preference_data=p,
                                 smaller_or_faster=s, gpu_memory_gb=g, model_params_b=1)).method
               for w in (0, 1) for n in (0, 500, 50_000) for d in (0, 1) for p in (0, 1) for s in (0, 1)
               for g in (8, 80)}
    assert reached == leaves
    for method in leaves:
        assert summary.SEED_BY_CHAPTER[recommend_chapter(method)].key == method
    dot = flow_dot(costs={"lora": "12 s"}, links={"lora": "03_lora.html"})
    assert 'URL="03_lora.html"' in dot and "12 s" in dot and dot.count("->") == 12


def recommend_chapter(method):
    from labkit.chooser import _CHAPTER

    return _CHAPTER[method][0]


# ---- chapter 11's exercise checks: the right answer passes, plausible wrong ones fail -----------
def _checks():
    from pathlib import Path

    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "11_summary.ipynb", as_version=4)
    def tagged(tag):
        return [c.source for c in nb.cells if tag in c.metadata.get("tags", [])]

    return tagged("solution"), tagged("check")


def _passes(check_source, **answers):
    try:
        exec(compile(check_source, "check", "exec"), dict(answers))  # noqa: S102 - the lab's own check cell
    except AssertionError:
        return False
    return True


def test_exercise_cells_have_markers_and_checks():
    solutions, checks = _checks()
    assert len(solutions) == len(checks) == 2
    assert all("### BEGIN SOLUTION" in s and "### END SOLUTION" in s for s in solutions)


def test_exercise_1_check():
    _, checks = _checks()
    n = 1_711_376_384  # the 1.7B configuration, tied embeddings counted once
    assert _passes(checks[0], full_ft_gb=18 * n / 1e9)
    assert not _passes(checks[0], full_ft_gb=16 * n / 1e9)                  # ZeRO's 16 bytes
    assert not _passes(checks[0], full_ft_gb=18 * n / 2**30)                # GiB, not GB
    assert not _passes(checks[0], full_ft_gb=18 * (n + 49152 * 2048) / 1e9)  # embeddings counted twice
    assert not _passes(checks[0], full_ft_gb=...)


def test_exercise_2_check():
    _, checks = _checks()
    assert _passes(checks[1], method="lora")
    for wrong in ("full_ft", "prompting", "LoRA", ...):
        assert not _passes(checks[1], method=wrong)
