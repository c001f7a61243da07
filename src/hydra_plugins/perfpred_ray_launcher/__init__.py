"""perfpred's Hydra launcher on Ray: `perfpred train -m ... hydra/launcher=ray` runs each job as a Ray task."""
