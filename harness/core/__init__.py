"""The method contract and the building blocks every protocol uses: methods and their registry, the task, the step
engine, tensor helpers, models, augmentation, preprocessing, timing and devices."""
