/*
 * Gather the QC records (`*_qc.json`) and figures of every step into one
 * HTML page. They are staged in the same tree as the published output
 * directory, so the report shows the same paths as
 * `linum_report.py OUTDIR` run on the results.
 */
process REPORT {
    label 'process_single'

    input:
    path top_level_qc, stageAs: 'results/*'
    path mosaic_grid_qc, stageAs: 'results/mosaic_grids/*'
    path stitch_qc, stageAs: 'results/stitch_3d/*'
    path axial_corr_qc, stageAs: 'results/axial_corr/*'
    path refused_qc, stageAs: 'results/axial_corr_refused/*'
    path normalize_qc, stageAs: 'results/normalize/*'
    path stack_qc, stageAs: 'results/stack/*'
    path screenshots, stageAs: 'results/qc/*'

    output:
    path 'report.html', emit: html

    script:
    def args = task.ext.args ?: ''
    """
    linum_report.py results report.html ${args}
    """

    stub:
    """
    touch report.html
    """
}
