"""verl-hoi: human-object interaction detection with a multimodal LLM on verl (HOI-R1).

Data flows one way; only ``verl_plugin`` imports verl.

- ``vocab``: HICO-DET objects, verbs, HOI classes, rare set.
- ``hicodet``: ``anno_bbox.mat`` / ``instances_*.json`` → one record per image.
- ``frames``: coordinate frames (``resized``, ``original``, ``norm1000``) and the processor's resize.
- ``families``: model families (Qwen2.5-VL, Qwen3-VL, Qwen3.5): patch and merge sizes, native frame, pixel budget.
- ``zero_shot``: the four zero-shot HICO-DET settings (unseen classes, training data without them).
- ``answer``: render ground truth as answer text, parse model text back (tolerant, bounded).
- ``prompts``: prompt templates and their registry.
- ``images``: image files and bytes decoded and checked (corrupt, truncated, too large).
- ``rows``: the row metadata (``RowMeta``) and the one row check of training, prediction and distillation.
- ``convert``: records → verl RLHFDataset rows; ``sft``: rows + reasoning → SFT rows.
- ``teacher``, ``traces``, ``distill``: thinking distillation from an OpenAI-compatible teacher; ``teacher_batch``,
  ``distill_batch``: the same through the OpenAI Batch API.
- ``geometry``, ``reward``: box IoU, Hungarian matching, the HOI rewards (verl's ``compute_score``).
- ``verl_plugin``: the ``hoi`` reward manager, the ``HOIDataset`` / ``HOISFTDataset`` adapters, the recipe
  guard, the SFT config printer.
- ``scored_triplets``: model text → scored triplets in the original frame, and the score-policy registry.
- ``prediction_files``: prediction files (and verl validation dumps) read into detections, evaluated.
- ``hoieval``: the official HICO-DET mAP on arrays (``HOIEval``, shaped like pycocotools' ``COCOeval``).
- ``hoi_errors``: false positives and misses sorted into error types, with the exact mAP gain of fixing each.
- ``report_page``: the self-contained HTML report (mAP, per-class AP, charts, errors, gallery, dumps).
- ``generation``: answers generated for parquet rows (transformers or vLLM), resumable.
- ``drawing``: predicted and ground-truth pairs drawn on an image.
- ``jsonl``, ``cli``: append-only JSONL files; the command lines' shared checks and atomic writes.
- Command lines (``python -m verl_hoi.<name>``), each only parsing arguments and calling the above:
  ``predict``, ``evaluate``, ``visualize``, ``report``, ``tiny_model``.
"""

__version__ = "0.1.0"
