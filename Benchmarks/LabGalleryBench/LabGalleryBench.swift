// placeholder: replication benchmarks land with their issue
@main struct LabGalleryBench { static func main() { print("labgallery-bench: not yet implemented") } }
