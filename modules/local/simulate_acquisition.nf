/*
 * Simulate a small raw acquisition (tiles + ground truth) so that
 * `-profile test` needs no data.
 */
process SIMULATE_ACQUISITION {
    tag "${preset}"
    label 'process_single'

    input:
    val preset

    output:
    path 'acquisition', emit: acquisition

    script:
    def args = task.ext.args ?: ''
    """
    linum_simulate_acquisition.py acquisition --preset ${preset} ${args}
    """

    stub:
    """
    mkdir -p acquisition/ground_truth
    """
}
