"""labkit.evaluate: generation is exact greedy decoding, also for peft prompt-learning models."""
import torch
from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

from labkit.evaluate import exact_match, generate
from labkit.model import EMBEDDED_MODEL, load_model, resolve_model_path

PROMPTS = ["Once upon a time,", "Message: Hello, my cup is broken.\nReply:"]


def greedy(step, tokenizer, prompt: str, n: int = 10) -> str:
    """Greedy decoding given `step(ids) -> next-token logits`, recomputing the whole sequence."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    start = ids.shape[1]
    for _ in range(n):
        nxt = step(ids).argmax()
        if nxt.item() == tokenizer.eos_token_id:
            break
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return tokenizer.decode(ids[0, start:], skip_special_tokens=True)


@torch.no_grad()
def test_soft_prompt_generation_equals_the_base_reading_the_prompt_embeddings_first():
    base, tokenizer = load_model()
    model = get_peft_model(load_model()[0], PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=10, prompt_tuning_init="TEXT",
        prompt_tuning_init_text="cat -> cat cat\ncup -> cup cup\n", tokenizer_name_or_path=resolve_model_path(EMBEDDED_MODEL)))
    soft = model.get_prompt(batch_size=1)  # (1, 10, hidden): the virtual tokens' embeddings

    def reference_step(ids):  # no peft in the loop: prepend the soft prompt to the input embeddings
        embeds = torch.cat([soft, base.get_input_embeddings()(ids)], dim=1)
        return base(inputs_embeds=embeds).logits[0, -1]

    prompts = ["fox ->", "owl ->"]
    expected = [greedy(reference_step, tokenizer, p) for p in prompts]
    assert expected != [greedy(lambda ids: base(ids).logits[0, -1], tokenizer, p) for p in prompts]  # it steers
    assert generate(model, tokenizer, prompts, max_new_tokens=10, stop=None) == expected


@torch.no_grad()
def test_prefix_generation_equals_the_base_attending_to_the_prefix():
    torch.manual_seed(0)
    base, tokenizer = load_model()
    model = get_peft_model(load_model()[0], PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8))
    for p in model.parameters():
        if p.requires_grad:
            p.normal_(0, 4.0)  # far from zero, so the prefix visibly steers

    def reference_step(ids):  # no peft in the loop: a fresh cache holding only the prefix's keys and values
        mask = torch.ones(1, 8 + ids.shape[1], dtype=torch.long)
        return base(input_ids=ids, past_key_values=model.get_prompt(batch_size=1), attention_mask=mask).logits[0, -1]

    expected = [greedy(reference_step, tokenizer, p) for p in PROMPTS]
    assert expected != [greedy(lambda ids: base(ids).logits[0, -1], tokenizer, p) for p in PROMPTS]
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=10, stop=None) == expected


def test_exact_match_strips_whitespace_only():
    assert exact_match([" 42 ", "a cat"], ["42", "a cats"]) == 0.5
