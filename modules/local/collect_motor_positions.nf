/*
 * One row of stage positions per slice (`slice_id,x_mm,y_mm,z_mm,n_tiles`);
 * the pipeline fans out over the slice ids this table lists.
 */
process COLLECT_MOTOR_POSITIONS {
    label 'process_single'

    input:
    path acquisition
    val slices

    output:
    path 'motor_positions.csv', emit: csv
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    def subset = slices ? "--slices ${slices.join(' ')}" : ''
    """
    linum_collect_motor_positions.py ${acquisition} motor_positions.csv ${subset} ${args}
    """

    stub:
    """
    printf 'slice_id,x_mm,y_mm,z_mm,n_tiles\\n0,0.0,0.0,0.0,4\\n1,0.0,0.0,0.2,4\\n' > motor_positions.csv
    """
}
