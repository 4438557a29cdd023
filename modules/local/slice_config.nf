/*
 * Write slice_config.csv: one row per slice with its quality metrics (from
 * the QC records) and a suggestion; the use/reason columns of the previous
 * table (the one this run read) are kept. Records are staged in the same
 * tree as the published output directory.
 */
process SLICE_CONFIG {
    label 'process_single'

    input:
    path mosaic_grid_qc, stageAs: 'results/mosaic_grids/*'
    path stitch_qc, stageAs: 'results/stitch_3d/*'
    path axial_corr_qc, stageAs: 'results/axial_corr/*'
    path stack_qc, stageAs: 'results/stack/*'
    path previous, stageAs: 'previous/*'

    output:
    path 'slice_config.csv', emit: csv
    path 'slice_config_qc.json', emit: qc

    script:
    def previous_arg = previous ? "--previous ${previous}" : ''
    """
    linum_slice_config.py results slice_config.csv ${previous_arg}
    """

    stub:
    """
    echo 'slice_id,use,reason' > slice_config.csv
    echo '{"step": "slice_config", "metrics": {}, "flags": [], "figures": {}}' > slice_config_qc.json
    """
}
