"""Analyses built on fitted laws: transfer, curse of multilinguality, pretrain-vs-finetune crossover."""
