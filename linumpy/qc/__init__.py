"""Quality control: per-step QC records, their figures and the HTML report."""
