"""What the model looked at (no Ray): Grad-CAM and attention maps stitched onto
whole recordings (``saliency``), their figures (``figures``), the deletion test
of their faithfulness (``faithfulness``) and the case-analysis page (``cases``).
``ecg-ray explain`` is the command."""
