"""The engine's entry point: :class:`JointDecoder` decodes prompts jointly under a rule, in
batches, through the generation cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moco_lit.cache import GenerationCache, cache_key
from moco_lit.collaborators import Collaborator, Prompt
from moco_lit.decoding.rules import FuseRule, PatchRule, SwitchRule
from moco_lit.decoding.session import DecodingSession, JointGeneration
from moco_lit.generation import DecodingConfig

# bump when a change to the engine changes outputs, so cached joint generations are not reused
ENGINE_VERSION = 1


def _joint_from_record(record: dict, cached: bool) -> JointGeneration:
    return JointGeneration.from_record(
        record,
        cached,
        usage=[tuple(u) for u in record.get("usage", [])],
        details=record.get("details", {}),
    )


@dataclass
class JointDecoder:
    """Decodes prompts jointly with ``collaborators`` under a rule, through the generation cache."""

    collaborators: Sequence[Collaborator]
    decoding: DecodingConfig = DecodingConfig()
    cache: GenerationCache | None = None
    batch_size: int = 16

    def open(self, prompts: Sequence[Prompt], seeds: Sequence[int] | None = None) -> DecodingSession:
        """Start a batch by hand (patch-level methods); prefills every model."""
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        return DecodingSession(self.collaborators, prompts, self.decoding, seeds)

    def generate(
        self,
        prompts: Sequence[Prompt],
        rule: FuseRule | SwitchRule | PatchRule,
        seeds: Sequence[int] | None = None,
    ) -> list[JointGeneration]:
        """One output per prompt under ``rule`` (cached results first)."""
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
        keys = [self._key(prompt, rule, seed) for prompt, seed in zip(prompts, seeds)]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        missing = sorted(
            {i for i, key in enumerate(keys) if key not in found},
            key=lambda i: -len(self.collaborators[0].render(prompts[i], self.decoding.enable_thinking)),
        )
        fresh: dict[str, dict] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            outputs = self.run_batch([prompts[i] for i in chunk], rule, [seeds[i] for i in chunk])
            fresh.update((keys[i], out.to_record()) for i, out in zip(chunk, outputs))
        if self.cache is not None and fresh:
            self.cache.put_many(fresh)
        return [_joint_from_record(found.get(key) or fresh[key], cached=key in found) for key in keys]

    def run_batch(
        self, prompts: Sequence[Prompt], rule: FuseRule | SwitchRule | PatchRule, seeds: Sequence[int]
    ) -> list[JointGeneration]:
        """Decode one batch without the cache."""
        session = self.open(prompts, seeds)
        if isinstance(rule, PatchRule):
            rule.reset(len(prompts))
            rule.run(session)
            return session.results(lambda row: {**rule.row_details(row), "segments": session.segments[row]})
        if isinstance(rule, SwitchRule):
            rule.reset(len(prompts))
            step = 0
            while not session.finished():
                session.switch_step(rule, step)
                step += 1
            return session.results(lambda row: {**rule.row_details(row), "segments": session.segments[row]})
        rule.reset(len(prompts))
        while not session.finished():
            session.fuse_step(rule)
        tokenizer = session.streams[0].tokenizer
        for row in range(len(prompts)):
            session.texts[row] = tokenizer.decode(session.streams[0].generated(row), skip_special_tokens=True)
        return session.results(rule.row_details)

    def _key(self, prompt: Prompt, rule: FuseRule | SwitchRule | PatchRule, seed: int) -> str:
        fingerprints = "|".join(c.fingerprint for c in self.collaborators)
        rendered = "\x1e".join(c.render(prompt, self.decoding.enable_thinking) for c in self.collaborators)
        fields = {**self.decoding.cache_fields(), "rule": rule.key, "engine": ENGINE_VERSION}
        return cache_key(fingerprints, rendered, fields, 0 if self.decoding.greedy else seed, 0)
