"""Named distillation recipes: the paper's DFAD as published, and dfad_tf's default for teachers from elsewhere.

A recipe fixes what the generator optimises and how the student learns from
its images; the models, schedule and batch size stay separate. `paper` is
DFAD exactly as Fang et al. publish it. `robust` (the default) is the same
min-max game made to hold for teachers dfad_tf did not train, in one of two
ways depending on what the teacher lets us read. For every teacher, generated
pixels are clipped to the real pixel range of its input convention. When it
has BatchNorm layers (in a Keras model, or found in a SavedModel's graph), a
BatchNorm prior (DeepInversion's) keeps generated images where the teacher's
training images were, with its logit scale, and the discrepancy is the
paper's; the generator then makes pixels from black to white (its tanh read as
pixels), so that the prior can give its images the brightness and contrast of
those training images, which the paper's Generator-A, standardising each
batch to the dataset's declared mean and standard deviation, does not let it
do (without the prior nothing sets them: for a LeNet-5 teacher such a
generator drew near-binary images, half of them white, and the students were
no better). Otherwise (a teacher without BatchNorm, or whose BatchNorm cannot be
read) a smoothness prior takes its place (without it the generator drifts to
pixel-scale textures that such a teacher classifies but a student learns
little real from), the discrepancy is taken on standardised logits (a
teacher's logit scale no longer matters), and half of the student's images
come from a momentum average of the generator, so that the student does not
forget where the generator has been (beside the BatchNorm prior, the average
cost a Conv-BN teacher's student 4 to 6 points). The generator's step runs the
student in inference mode: a student with BatchNorm layers (MobileNets,
ResNets) in training mode normalises each batch by its own statistics, so it
magnifies the faint contrast of near-uniform images that the teacher sees as
flat, and the generator collapsed to such images. Such a student also swings
far from epoch to epoch on generated images, so the run keeps a moving average
of its weights; a student without them (LeNet-5) keeps its own weights, which
the average did not improve.
README's "Recipes" section has the measurements behind each choice.

Example:
>>> RECIPES["robust"].parts(conv_bn_teacher)
{'standardize_logits': False, 'clip_pixels': True, 'generate_pixels': True, 'replay_memory': 0,
 'generator_average': 0.0, 'generator_loss_weights': {'adversarial': 1.0, 'batchnorm': 1.0},
 'student_training_in_generator_step': False}
>>> RECIPES["robust"].parts(lenet5_teacher)["generator_loss_weights"]
{'adversarial': 1.0, 'smoothness': 1.0}
>>> RECIPES["robust"].student_parts(mobilenet_student)
{'student_average': 0.998}
"""

import dataclasses

import keras

from dfad_tf import objectives

# The `config.ObjectiveConfig` fields a recipe decides: before the student is built (`Recipe.parts`, in this order;
# all but the last by the teacher), and by the student (`Recipe.student_parts`), which is built after these parts
# have fixed the precision policy.
TEACHER_PARTS = ("standardize_logits", "clip_pixels", "generate_pixels", "replay_memory", "generator_average",
                 "generator_loss_weights", "student_training_in_generator_step")
STUDENT_PARTS = ("student_average",)
PARTS = TEACHER_PARTS + STUDENT_PARTS


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the generator optimises and how the student learns, for any teacher.

    Args:
        standardize_logits: compare teacher and student logits after
            standardising each vector (`losses.Discrepancy`), unless the
            BatchNorm prior is on.
        clip_pixels: clip generated images to the real pixel range
            (`conventions.PixelRange`).
        generate_pixels: the generator ends at its tanh, read as pixels
            from black to white, instead of the paper's output (Generator-A
            standardises each batch to the dataset's mean and standard
            deviation), when the BatchNorm prior is on (it then sets the
            images' brightness and contrast).
        replay_memory: images in the replay memory (0 for none).
        generator_average: momentum of the average of the generator's
            weights that makes half of the student's images
            (`averaging.WeightAverage`; 0 for none), unless the BatchNorm
            prior is on.
        student_average: momentum of the average of the student's weights
            that the run keeps (`averaging.WeightAverage`; 0 for none), for
            a student with BatchNorm layers; 0 for one without.
        generator_loss_weights: generator loss weights (`objectives.TERMS`).
        batchnorm_prior: weight of the `batchnorm` term, added when the
            teacher has BatchNorm layers that can be read (0 for never); it
            then replaces standardised logits, the generator's average and
            the smoothness prior.
        smoothness_prior: weight of the `smoothness` term, added when the
            BatchNorm prior is not (0 for never).
        student_training_in_generator_step: the generator's step runs the
            student in training mode (DFAD's), or in inference mode (the
            same for a student without BatchNorm or dropout layers).
    """

    standardize_logits: bool
    clip_pixels: bool
    generate_pixels: bool
    replay_memory: int
    generator_average: float
    student_average: float
    generator_loss_weights: tuple  # (term, weight) pairs: a frozen dataclass needs hashable fields
    batchnorm_prior: float
    smoothness_prior: float
    student_training_in_generator_step: bool

    def parts(self, teacher):
        """The recipe's parts for `teacher`: the `config.ObjectiveConfig` fields of `TEACHER_PARTS`."""
        parts = {name: getattr(self, name) for name in TEACHER_PARTS}
        parts["generator_loss_weights"] = dict(self.generator_loss_weights)
        if self.batchnorm_prior and objectives.batchnorm_probe(teacher)[0]:
            parts["standardize_logits"] = False
            parts["generator_average"] = 0.0
            parts["generator_loss_weights"]["batchnorm"] = self.batchnorm_prior
            return parts
        parts["generate_pixels"] = False
        if self.smoothness_prior:
            parts["generator_loss_weights"]["smoothness"] = self.smoothness_prior
        return parts

    def student_parts(self, student):
        """The recipe's parts for `student` (a built model): the fields of `STUDENT_PARTS`."""
        return {"student_average": self.student_average if _has_batchnorm(student) else 0.0}


def _has_batchnorm(model):
    """Whether `model` or a model nested in it has a BatchNormalization layer."""
    return any(isinstance(layer, keras.layers.BatchNormalization) or _has_batchnorm(layer)
               for layer in getattr(model, "layers", []))


RECIPES = {
    "paper": Recipe(standardize_logits=False, clip_pixels=False, generate_pixels=False, replay_memory=0,
                    generator_average=0.0, student_average=0.0, generator_loss_weights=(("adversarial", 1.0),),
                    batchnorm_prior=0.0, smoothness_prior=0.0, student_training_in_generator_step=True),
    "robust": Recipe(standardize_logits=True, clip_pixels=True, generate_pixels=True, replay_memory=0,
                     generator_average=0.99, student_average=0.998, generator_loss_weights=(("adversarial", 1.0),),
                     batchnorm_prior=1.0, smoothness_prior=1.0, student_training_in_generator_step=False),
}
