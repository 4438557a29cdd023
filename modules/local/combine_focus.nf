/*
 * The acquisition's focus profile: the median of the focus profiles the
 * slices estimated and accepted (read from their axial QC records), and the
 * slices whose own estimate was refused, which borrow it (AXIAL_CORR_BORROWED).
 */
process COMBINE_FOCUS {
    label 'process_single'

    input:
    path qc_records  // every slice's axial correction QC record (*_qc.json)

    output:
    path 'focus_acquisition.json', emit: json
    path 'focus_borrowers.csv', emit: borrowers

    script:
    """
    linum_combine_focus.py ${qc_records} focus_acquisition.json --borrowers_csv focus_borrowers.csv
    """

    stub:
    """
    echo '{"profile": null, "donors": [], "per_aline": false, "refused": {}}' > focus_acquisition.json
    echo 'slice_id,focus_mode' > focus_borrowers.csv
    """
}
