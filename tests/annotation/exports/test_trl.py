"""Every DPO export trains with TRL: each file format (JSON lines, parquet, the
zipped ``save_to_disk`` folder) loads with ``datasets``, and TRL's DPOTrainer
runs two steps on it with a tiny randomly initialised Llama and a
character-level tokenizer built here (nothing is downloaded), for a study of
HH-RLHF conversations and one of plain-text prompts, in both forms.

What the trainer trains on is checked token by token: the prompt it conditions
on ends at the assistant's turn (the ``\\n\\nAssistant:`` cue of the text
form, the chat template's assistant header of the conversational form), and the
replies it learns start after it. The old export, whose prompt ended with the
human's last words and whose replies followed with nothing between
(``…Human: 25Is it an adult…``), fails that check
(``test_the_check_catches_the_old_cue_less_export``).
"""

from __future__ import annotations

import copy
import io
import json
import math
import zipfile
from pathlib import Path

import datasets
import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import DPOConfig, DPOTrainer

from annotation.models import Prompt
from tests.annotation.exports.answered import body
from tests.annotation.exports.chats import HH_ROWS, hh_study, text_study

pytestmark = pytest.mark.django_db

# A chat template in the usual shape: a header per turn, and the assistant's
# header alone as the generation prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ASSISTANT_HEADER = "<|assistant|>\n"
HH_CUE = "\n\nAssistant:"
LAYOUTS = ("dpo.jsonl", "dpo.parquet", "dpo-dataset.zip")
SIDES = ("chosen_ids", "rejected_ids")


@pytest.fixture(autouse=True)
def _quiet_datasets():
    """No progress bars from the trainer's dataset preparation in the test log."""
    were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    yield
    if not were_disabled:
        datasets.enable_progress_bars()


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character (printable ASCII and newline), so a decoded
    sequence is exactly the text the model saw."""
    vocab = {token: i for i, token in enumerate(["<pad>", "<unk>", "<eos>", "\n", *map(chr, range(32, 127))])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", chat_template=CHAT_TEMPLATE
    )


def tiny_llama(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def load(study, key: str, *, form: str, tmp_path: Path) -> datasets.Dataset:
    """The download ``key`` of the study in ``form``, saved and loaded back with ``datasets``."""
    data = body(study, key, form=form)
    folder = tmp_path / f"{form}-{key}"
    folder.mkdir()
    cache = str(tmp_path / "hf-cache")
    if key == "dpo-dataset.zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(folder)
        (root,) = folder.iterdir()
        card = (root / "README.md").read_text()
        assert f"Form: **{form}**" in card, "the dataset card says which form the folder holds"
        return datasets.load_from_disk(str(root))
    path = folder / key
    path.write_bytes(data)
    return datasets.load_dataset(
        "json" if key.endswith(".jsonl") else "parquet", data_files=str(path), split="train", cache_dir=cache
    )


def dpo_trainer(dataset: datasets.Dataset, tmp_path: Path) -> DPOTrainer:
    tokenizer = char_tokenizer()
    model = tiny_llama(tokenizer)
    args = DPOConfig(
        output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2,
        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", max_length=256, seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    return DPOTrainer(
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer
    )


def boundary_problems(trainer: DPOTrainer, *, conversation: bool, form: str) -> list[str]:
    """Sequences the trainer would train on whose prompt does not end at the
    assistant's turn, or whose replies do not start after it."""
    tokenizer = trainer.processing_class
    problems = []
    for row in trainer.train_dataset:
        prompt = tokenizer.decode(row["prompt_ids"])
        for side in SIDES:
            reply = tokenizer.decode(row[side])
            if form == "conversational":
                ok = prompt.endswith(ASSISTANT_HEADER)
            elif conversation:
                ok = prompt.endswith(HH_CUE) and reply.startswith(" ")
            else:
                ok = bool(prompt) and reply.startswith(" ")
            if not ok:
                problems.append(repr(prompt[-24:] + "|" + reply[:24]))
    return problems


@pytest.mark.parametrize("form", ["conversational", "text"])
@pytest.mark.parametrize("kind", ["conversation", "plain text"])
def test_dpo_trainer_trains_two_steps_on_every_dpo_export(kind: str, form: str, tmp_path: Path):
    study = hh_study() if kind == "conversation" else text_study()
    loaded = {key: load(study, key, form=form, tmp_path=tmp_path) for key in LAYOUTS}
    rows = {key: dataset.select_columns(["prompt", "chosen", "rejected"]).to_list() for key, dataset in loaded.items()}
    assert rows["dpo.jsonl"] == rows["dpo.parquet"] == rows["dpo-dataset.zip"], "every format holds the same pairs"
    assert set(loaded["dpo.parquet"]["form"]) == {form}

    for key, dataset in loaded.items():
        trainer = dpo_trainer(dataset, tmp_path / key)
        assert len(trainer.train_dataset) == dataset.num_rows, "no pair was dropped as too long"
        assert boundary_problems(trainer, conversation=kind == "conversation", form=form) == []
        decode = trainer.processing_class.decode
        sequences = [decode(row["prompt_ids"] + row[side]) for row in trainer.train_dataset for side in SIDES]
        assert not any("25Is it" in s for s in sequences)
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        print(f"DPOTrainer [{kind}, {form}, {key}]: {dataset.num_rows} pairs, losses {losses}")
        assert trainer.state.global_step == 2 and len(losses) == 2
        assert all(math.isfinite(loss) for loss in losses)


def test_the_check_catches_the_old_cue_less_export(tmp_path: Path):
    """The export before the forms: the HH prompt as stored (ending in the
    human's last words) and the bare replies."""
    study = hh_study()
    records = [json.loads(line) for line in body(study, "dpo.jsonl", form="text").decode().splitlines()]
    old = datasets.Dataset.from_list(
        [
            {
                "prompt": Prompt.objects.get(id=r["prompt_id"]).text,
                "chosen": r["chosen"].lstrip(),
                "rejected": r["rejected"].lstrip(),
            }
            for r in records
        ]
    )
    assert old[0]["prompt"].startswith("Human: ") and old.num_rows == len(HH_ROWS)
    trainer = dpo_trainer(old, tmp_path)
    problems = boundary_problems(trainer, conversation=True, form="text")
    assert len(problems) == 2 * len(HH_ROWS)
    decode = trainer.processing_class.decode
    sequences = [decode(row["prompt_ids"] + row[side]) for row in trainer.train_dataset for side in SIDES]
    assert any("Human: 25Is it an adult" in s for s in sequences), "what the old export trained on"
