// placeholder: the CLI lands with its issue
@main struct LabGalleryCLI { static func main() { print("labgallery: not yet implemented") } }
