"""One measured training run in a fresh process, for tests/test_memory_estimate.py:

    python tests/_memory_probe.py MODEL METHOD BATCH SEQ_LEN STEPS    -> one JSON line

MODEL: a model folder ('' for the embedded one); METHOD: full_ft, lora (r=8 on q_proj, v_proj) or
prompt_tuning (16 virtual tokens). TRL's SFTTrainer with the lab's trainer_args trains STEPS steps
on BATCH blocks of SEQ_LEN tokens of LabWorld text (the bench's data); `measure` records the RSS the
run adds above the level before it (the model's weights are already loaded: not in it), printed
beside `estimate_training_memory_mb`'s total less its weights."""
import json
import sys
import tempfile

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

name, method, b, s, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
profile = get_profile("smoke")
if name == "tiny":  # a model of ~0 parameters: what the framework alone adds (the estimator's baseline)
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = load_model()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=8,
                                         num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1))
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
print(json.dumps({"model": name, "method": method, "b": b, "s": s, "measured": m.peak_memory_mb,
                  "predicted": est["total"] - est["weights"], "parts": est,
                  "trainable": count_params(model)[0], "wall": m.wall_time_s}))
