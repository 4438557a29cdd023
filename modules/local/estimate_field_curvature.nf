/*
 * Decide the field curvature once for the whole acquisition (the central
 * tiles of a few slices spread through it); every mosaic grid applies the
 * decision (`field_curvature.json`).
 */
process ESTIMATE_FIELD_CURVATURE {
    label 'process_medium'

    input:
    path acquisition

    output:
    path 'field_curvature.json', emit: json
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    """
    linum_estimate_field_curvature.py ${acquisition} field_curvature.json --workers ${task.cpus} ${args}
    """

    stub:
    """
    echo '{}' > field_curvature.json
    """
}
