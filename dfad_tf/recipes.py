"""Named distillation recipes: the paper's DFAD as published, and dfad_tf's default for teachers from elsewhere.

A recipe fixes what the generator optimises and how the student learns from
its images; the models, schedule and batch size stay separate. `paper` is
DFAD exactly as Fang et al. publish it. `robust` (the default) is the same
min-max game made to hold for teachers dfad_tf did not train: a discrepancy on
standardised logits (a teacher's logit scale no longer matters), generated
pixels clipped to the real pixel range of the teacher's input convention, a
replay memory of generated images, and a BatchNorm prior switched on by itself
when the teacher's BatchNorm layers can be read. README's "Recipes" section
has the ablation behind each part.

Example:
>>> recipe = RECIPES["robust"]
>>> recipe.generator_loss_weights(teacher)   # a Conv-BN teacher
{'adversarial': 1.0, 'batchnorm_kl': 1.0}
"""

import dataclasses

from dfad_tf import objectives


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the generator optimises and how the student learns, for any teacher.

    Args:
        standardize_logits: compare teacher and student logits after
            standardising each vector (`losses.Discrepancy`).
        clip_pixels: clip generated images to the real pixel range
            (`conventions.PixelRange`).
        replay_memory: images in the replay memory (0 for none).
        weights: generator loss weights (`objectives.TERMS`).
        batchnorm_prior: weight of the `batchnorm_kl` term, added when the
            teacher has BatchNorm layers that can be read (0 for never).
    """

    standardize_logits: bool
    clip_pixels: bool
    replay_memory: int
    weights: tuple  # (term, weight) pairs: a frozen dataclass needs hashable fields
    batchnorm_prior: float

    def generator_loss_weights(self, teacher):
        """The generator's loss weights for `teacher`: the BatchNorm prior only where it can be computed."""
        weights = dict(self.weights)
        if self.batchnorm_prior and objectives.readable_batchnorms(teacher):
            weights["batchnorm_kl"] = self.batchnorm_prior
        return weights


RECIPES = {
    "paper": Recipe(standardize_logits=False, clip_pixels=False, replay_memory=0,
                    weights=(("adversarial", 1.0),), batchnorm_prior=0.0),
    "robust": Recipe(standardize_logits=True, clip_pixels=True, replay_memory=8192,
                     weights=(("adversarial", 1.0),), batchnorm_prior=1.0),
}
