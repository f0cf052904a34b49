"""The field's metrics: BLEU/chrF, captioning BLEU/CIDEr-D, ROUGE, edit-distance error rates."""
