"""verl-hoi: human-object interaction detection with a multimodal LLM on verl (HOI-R1).

Data flows one way; only ``verl_plugin`` imports verl.

- ``vocab``: HICO-DET objects, verbs, HOI classes, rare set.
- ``hicodet``: ``anno_bbox.mat`` / ``instances_*.json`` → one record per image.
- ``frames``: coordinate frames (``resized``, ``original``, ``norm1000``) and the processor's resize.
- ``answer``: render ground truth as answer text, parse model text back (tolerant, bounded).
- ``prompts``: prompt templates and their registry.
- ``convert``: records → verl RLHFDataset rows; ``sft``: rows + reasoning → SFT rows.
- ``teacher``, ``traces``, ``distill``: thinking distillation from an OpenAI-compatible teacher.
- ``geometry``, ``reward``: box IoU, Hungarian matching, the HOI rewards (verl's ``compute_score``).
- ``verl_plugin``: the ``hoi`` reward manager, the ``HOIDataset`` / ``HOISFTDataset`` adapters, the recipe
  guard, the SFT config printer.
- ``detections``, ``predictions``, ``evaluation``: model text → triplets, prediction files, official mAP.
- Command lines: ``predict``, ``evaluate``, ``visualize``, ``tiny_model`` (``python -m verl_hoi.<name>``).
"""

__version__ = "0.1.0"
