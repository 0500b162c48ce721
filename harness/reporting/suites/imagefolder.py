"""The ImageFolder suite's report (:mod:`harness.suites.imagefolder` defines its cases): no findings, the
leaderboard's tables only."""

DESCRIPTION = "your own ImageFolder tree (--dataset=imagefolder:PATH): stratified 70/15/15 split, fixed seed"
LEADERBOARD_COLUMNS = ["test_acc", "test_macro_f1", "val_acc"]
