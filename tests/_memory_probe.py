"""One measured training run in a fresh process, for tests/test_memory_estimate.py:

    python tests/_memory_probe.py MODEL METHOD BATCH SEQ_LEN STEPS    -> one JSON line
    python tests/_memory_probe.py --cases < CASES.json                -> one JSON line: a list

MODEL: a model folder ('' for the embedded one); METHOD: full_ft, lora (r=8 on q_proj, v_proj) or
prompt_tuning (16 virtual tokens). TRL's SFTTrainer with the lab's trainer_args trains STEPS steps
on BATCH blocks of SEQ_LEN tokens of LabWorld text (the bench's data); `measure` records the RSS the
run adds above the level before it (the model's weights are already loaded: not in it), printed
beside `estimate_training_memory_mb`'s total less its weights.

With --cases (a JSON list of [MODEL, METHOD, BATCH, SEQ_LEN, STEPS]) each run is a child forked
from this process after its imports: a fresh process that never trained (its heap is this one's,
which has not trained either, and `measure` counts from the child's own RSS and peak), without
importing torch, transformers, peft and trl again for each run (about 5 s of CPU each)."""
import ctypes
import json
import os
import sys
import tempfile
import traceback

from labkit.runtime import quiet  # noqa: E402

quiet()
import torch  # noqa: E402 (after quiet(): the libraries read its settings on import)

torch.set_num_threads(1)
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, PromptTuningConfig, get_peft_model  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from labkit.bench import BenchSetup, token_blocks  # noqa: E402
from labkit.measure import count_params, estimate_training_memory_mb, measure  # noqa: E402
from labkit.model import load_model  # noqa: E402
from labkit.profiles import get_profile  # noqa: E402
from labkit.training import trainer_args  # noqa: E402


def probe(name: str, method: str, b: int, s: int, steps: int) -> dict:
    profile = get_profile("smoke")
    if name == "tiny":  # a model of ~0 parameters: what the framework alone adds (the estimator's baseline)
        from transformers import LlamaConfig, LlamaForCausalLM

        _, tok = load_model()
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=8,
                                             num_hidden_layers=1, num_attention_heads=1,
                                             num_key_value_heads=1))
    else:
        model, tok = load_model(name or None)
    kw = {}
    if method == "lora":
        kw = dict(lora_r=8, lora_targets=("q_proj", "v_proj"))
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=["q_proj", "v_proj"]))
    elif method == "prompt_tuning":
        kw = dict(virtual_tokens=16)
        model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16))
    blocks = token_blocks(tok, BenchSetup(steps, 0, b, s), b * steps)
    args = trainer_args(profile, tempfile.mkdtemp(), SFTConfig, checkpoints=False, max_steps=steps,
                        per_device_train_batch_size=b, max_length=s, disable_tqdm=True, learning_rate=1e-4)
    data = Dataset.from_list([{"input_ids": x} for x in blocks])
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    est = estimate_training_memory_mb(model, b, s, method=method, **kw)
    with measure(method, device="cpu") as m:
        trainer.train()
    return {"model": name, "method": method, "b": b, "s": s, "measured": m.peak_memory_mb,
            "predicted": est["total"] - est["weights"], "parts": est,
            "trainable": count_params(model)[0], "wall": m.wall_time_s}


def resident_file_pages() -> list[int]:
    """Addresses of the pages of files (the interpreter, torch's libraries, ...) mapped and resident
    in this process (bit 63 of /proc/self/pagemap). fork() does not copy the page tables of file
    mappings: a child maps them again when it touches them, so a run in the child would count, as
    RSS it adds, code the parent had already paged in (measured: about 6 MB more file RSS on
    labworld-base's runs). The child touches these pages first, so it starts where a fresh process
    that made the same imports starts (its file RSS then equals the parent's)."""
    import numpy as np

    page = os.sysconf("SC_PAGE_SIZE")
    pages = []
    with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or not fields[5].startswith("/") or not fields[1].startswith("r"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // page * 8)
            present = np.frombuffer(pagemap.read((end - start) // page * 8), dtype=np.uint64) >> np.uint64(63)
            pages += (start + page * np.flatnonzero(present)).tolist()
    return pages


def probe_in_child(case: list) -> dict:
    """probe(*case) in a child forked from this process; its result, or RuntimeError with its error."""
    pages = resident_file_pages()
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one run, its result down the pipe, then out without this process's exit
        os.close(read)
        try:
            for address in pages:  # map the parent's resident file pages again (see above)
                ctypes.string_at(address, 1)
            result = {"result": probe(case[0], case[1], int(case[2]), int(case[3]), int(case[4]))}
        except BaseException:
            result = {"error": traceback.format_exc()}
        with os.fdopen(write, "w") as pipe:
            json.dump(result, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(text) if text else {"error": f"the child for {case} died (wait status {status})"}
    if "error" in result:
        raise RuntimeError(result["error"])
    return result["result"]


if sys.argv[1:] == ["--cases"]:
    print(json.dumps([probe_in_child(case) for case in json.load(sys.stdin)]))
else:
    print(json.dumps(probe(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
