"""Every collaboration method by short name: name → class path, as strings, importing nothing.

The command line lists and resolves methods from this table without loading any of them (so
``python -m moco_lit --help`` stays light); :func:`moco_lit.methods.get` imports the one asked
for. A new method is one line here; ``tests/test_method_registry.py`` checks that every entry
imports with a matching ``method_name``, that no method module is left out, and that every recipe
names a registered class.
"""

from __future__ import annotations

REGISTRY: dict[str, str] = {
    "agglm": "moco_lit.methods.text.agglm.AggLM",
    "bbmas": "moco_lit.methods.text.bbmas.Bbmas",
    "cascade": "moco_lit.methods.api.cascade.Cascade",
    "collm": "moco_lit.methods.api.collm.CoLLM",
    "dare_ties": "moco_lit.methods.weight.dare_ties.DareTies",
    "distillation": "moco_lit.methods.distillation.Distillation",
    "expo": "moco_lit.methods.weight.expo.Expo",
    "graph_routing": "moco_lit.methods.api.graph_routing.GraphRouting",
    "greedy_soup": "moco_lit.methods.weight.greedy_soup.GreedySoup",
    "heterogeneous_swarms": "moco_lit.methods.text.heterogeneous_swarms.HeterogeneousSwarms",
    "knowledge_card": "moco_lit.methods.text.knowledge_card.KnowledgeCard",
    "llm_blender": "moco_lit.methods.text.llm_blender.LlmBlender",
    "logit_contrastive": "moco_lit.methods.logit.logit_contrastive.LogitContrastive",
    "logit_fusion": "moco_lit.methods.logit.logit_fusion.LogitFusion",
    "lorahub": "moco_lit.methods.weight.lorahub.LoraHub",
    "majority_vote": "moco_lit.methods.text.majority_vote.MajorityVote",
    "mentor_collab": "moco_lit.methods.api.mentor_collab.MentorCollab",
    "moa": "moco_lit.methods.text.moa.Moa",
    "model_swarms": "moco_lit.methods.weight.model_swarms.ModelSwarms",
    "multiagent_feedback": "moco_lit.methods.text.multiagent_feedback.MultiagentFeedback",
    "multiagent_finetuning": "moco_lit.methods.text.multiagent_finetuning.MultiagentFinetuning",
    "multiagent_refine": "moco_lit.methods.text.multiagent_refine.MultiagentRefine",
    "nudging": "moco_lit.methods.api.nudging.Nudging",
    "prompt_routing": "moco_lit.methods.api.prompt_routing.PromptRouting",
    "single_model": "moco_lit.methods.single_model.SingleModel",
    "slm_mux": "moco_lit.methods.text.slm_mux.SlmMux",
    "sparta": "moco_lit.methods.text.sparta.Sparta",
    "stackelberg": "moco_lit.methods.text.stackelberg.Stackelberg",
    "structure": "moco_lit.methods.text.structure.Structure",
    "switch_generation": "moco_lit.methods.api.switch_generation.SwitchGeneration",
    "trained_router": "moco_lit.methods.api.trained_router.TrainedRouter",
}


def names() -> list[str]:
    """Every available method's short name."""
    return sorted(REGISTRY)
