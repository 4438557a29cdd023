/*
 * Stack every slice (ordered by slice id) into the final volume, placed
 * with the motor positions; the lateral shifts applied are saved as JSON.
 * The slices' uncompensated signals give each slice's attenuation (QC).
 */
process STACK_SLICES {
    label 'process_high'

    input:
    path slices
    path uncompensated
    path motor_positions
    val allow_gaps
    path acquisition_json  // the acquisition's sidecar, or [] when it has none

    output:
    path 'volume.ome.zarr', emit: volume
    path 'volume_shifts.json', emit: shifts
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    def gaps = allow_gaps ? '--allow_gaps' : ''
    def sidecar = acquisition_json ? "--acquisition_json ${acquisition_json}" : ''
    """
    linum_stack_slices_motor.py ${slices} volume.ome.zarr --uncompensated ${uncompensated} --motor_positions ${motor_positions} --shifts_out volume_shifts.json ${gaps} ${sidecar} --workers ${task.cpus} ${args}
    """

    stub:
    """
    mkdir volume.ome.zarr
    echo '{}' > volume_shifts.json
    """
}
